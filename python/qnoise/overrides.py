"""Replacing a module's parameter by a computed tensor for the duration of its forward pass.

Quant-Noise and iPQ finetuning make a layer compute with another tensor than its parameter (a
noisy copy, a weight decoded from trainable centroids) without changing the layer's code or the
parameter: a forward pre-hook puts the computed tensor where the module reads its parameter
(module._parameters, as torch.func.functional_call does) and a forward hook puts the parameter
back. Optimizers and state dicts only ever see the parameter. A forward that raises leaves the
computed tensor in place until the next call restores it first.
"""

_ATTRIBUTE = "_qnoise_overrides"


class _Overrides:
    def __init__(self, module):
        self.functions = {}  # parameter name -> fn(parameter) -> tensor
        self.saved = {}
        self.handles = [module.register_forward_pre_hook(self.before),
                        module.register_forward_hook(self.after)]

    def before(self, module, inputs):
        self.after(module, inputs, None)
        for name, function in self.functions.items():
            parameter = module._parameters[name]
            self.saved[name] = parameter
            module._parameters[name] = function(parameter)

    def after(self, module, inputs, output):
        for name, parameter in self.saved.items():
            module._parameters[name] = parameter
        self.saved.clear()


def set_override(module, name, function):
    """Makes `module` compute with function(parameter `name`) in place of that parameter."""
    overrides = module.__dict__.get(_ATTRIBUTE)
    if overrides is None:
        overrides = _Overrides(module)
        module.__dict__[_ATTRIBUTE] = overrides
    overrides.functions[name] = function


def get_override(module, name):
    overrides = module.__dict__.get(_ATTRIBUTE)
    return overrides.functions.get(name) if overrides is not None else None


def remove_override(module, name):
    """Undoes set_override; the module's hooks go when it has no override left."""
    overrides = module.__dict__.get(_ATTRIBUTE)
    if overrides is None or name not in overrides.functions:
        return
    overrides.after(module, (), None)
    del overrides.functions[name]
    if not overrides.functions:
        for handle in overrides.handles:
            handle.remove()
        del module.__dict__[_ATTRIBUTE]


def has_overrides(module):
    return _ATTRIBUTE in module.__dict__
