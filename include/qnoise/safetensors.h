#pragma once
// The safetensors container (Hugging Face): an 8-byte little-endian header length N, N bytes of
// JSON {"__metadata__": {string: string}, name: {"dtype", "shape", "data_offsets": [begin, end]}},
// then the tensors' raw little-endian bytes, back to back. Python users open our files with
// `safetensors.safe_open`; we read theirs. We write the header padded to 8 bytes and the data
// ordered by element size, largest first, so every tensor starts aligned to its element size.
//
// Reading validates everything before a byte is used: the header length against the file size
// and a 100 MB cap, the JSON, every dtype and shape, that offsets are in order, cover the data
// exactly and match shape x element size. Any violation is a qnoise::Error naming the file and
// the problem; a truncated or corrupt file never crashes or yields wrong tensors.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace qnoise {

// safetensors dtype names we store: "U8", "I8", "U16", "I16", "I32", "I64", "F16", "F32".
// libtorch 1.13 has no uint16: "U16" tensors are int16 tensors holding the same 16 bits.
struct NamedTensor {
  std::string name;
  std::string dtype;  // as stored in the file
  at::Tensor tensor;  // CPU, contiguous, of the torch dtype that matches `dtype`
};

struct SafetensorsContents {
  std::map<std::string, std::string> metadata;  // "__metadata__"
  std::vector<NamedTensor> tensors;             // read: in the order of their data

  // The tensor named `name`; throws qnoise::Error naming it when absent.
  const NamedTensor& at(const std::string& name) const;
  const NamedTensor* find(const std::string& name) const;
};

// The torch dtype a safetensors dtype name is held in; throws qnoise::Error for other names.
at::ScalarType torch_dtype_of(const std::string& safetensors_dtype);
// The safetensors name for a torch dtype (kShort -> "I16"; use "U16" explicitly for codes).
std::string safetensors_dtype_of(at::ScalarType dtype);
int64_t element_size_of(const std::string& safetensors_dtype);

// Bytes the file for these contents takes (header included).
int64_t safetensors_file_size(const SafetensorsContents& contents);

// Writes atomically (temporary file + rename), streaming each tensor from its memory. Throws qnoise::Error on duplicate names, a dtype
// that does not match its tensor, or an I/O failure.
void write_safetensors(const std::string& path, const SafetensorsContents& contents);

// Reads and validates a whole file.
SafetensorsContents read_safetensors(const std::string& path);
// The same from bytes in memory; `source` names them in errors.
SafetensorsContents parse_safetensors(const std::string& bytes, const std::string& source);

}  // namespace qnoise
