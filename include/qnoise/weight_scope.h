#pragma once
// The scope object NoisyLayers::draw() and PqLayers::bind() return: while it lives, layers read a
// substituted weight; when it ends (or its owner's restore runs), they read their parameter again.
// Moving it hands the duty over; it cannot be copied.
namespace qnoise {

template <typename Owner>
class WeightScope {
 public:
  explicit WeightScope(const Owner* owner) : owner_(owner) {}
  WeightScope(WeightScope&& other) noexcept : owner_(other.owner_) { other.owner_ = nullptr; }
  WeightScope(const WeightScope&) = delete;
  WeightScope& operator=(const WeightScope&) = delete;
  WeightScope& operator=(WeightScope&&) = delete;
  ~WeightScope() {
    if (owner_ != nullptr) owner_->restore();
  }

 private:
  const Owner* owner_;
};

}  // namespace qnoise
