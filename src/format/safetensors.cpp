#include "qnoise/safetensors.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include "qnoise/atomic_file.h"
#include "qnoise/block_layout.h"  // shape_to_string
#include "qnoise/error.h"

namespace qnoise {

namespace {

constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // as the reference implementation

struct DtypeInfo {
  const char* name;
  at::ScalarType torch_dtype;
  int64_t size;
};

constexpr DtypeInfo kDtypes[] = {
    {"U8", at::kByte, 1},   {"I8", at::kChar, 1},  {"U16", at::kShort, 2}, {"I16", at::kShort, 2},
    {"I32", at::kInt, 4},   {"I64", at::kLong, 8}, {"F16", at::kHalf, 2},  {"F32", at::kFloat, 4},
};

const DtypeInfo* find_dtype(const std::string& name) {
  for (const auto& info : kDtypes)
    if (name == info.name) return &info;
  return nullptr;
}

void put_u64_le(std::string& out, uint64_t value) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xFF));
}

uint64_t get_u64_le(const std::string& bytes) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | static_cast<unsigned char>(bytes[i]);
  return value;
}

// The order of the tensors' data: by element size, largest first (stable), so that after a header
// padded to 8 bytes every tensor starts at an offset aligned to its element size, as zero-copy
// readers need (the reference writer orders by alignment too).
std::vector<const NamedTensor*> data_order(const SafetensorsContents& contents) {
  std::vector<const NamedTensor*> order;
  for (const auto& entry : contents.tensors) order.push_back(&entry);
  std::stable_sort(order.begin(), order.end(), [](const NamedTensor* a, const NamedTensor* b) {
    const DtypeInfo* x = find_dtype(a->dtype);
    const DtypeInfo* y = find_dtype(b->dtype);
    return (x ? x->size : 0) > (y ? y->size : 0);
  });
  return order;
}

// The JSON header (tensors in the caller's order, data in data_order), padded with spaces to a
// multiple of 8 bytes.
std::string header_json(const SafetensorsContents& contents) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!contents.metadata.empty()) header["__metadata__"] = contents.metadata;
  std::set<std::string> names;
  for (const auto& entry : contents.tensors) {
    QNOISE_CHECK(!entry.name.empty() && entry.name != "__metadata__", "safetensors: bad tensor name '",
                 entry.name, "'");
    QNOISE_CHECK(names.insert(entry.name).second, "safetensors: duplicate tensor name '", entry.name, "'");
    const DtypeInfo* info = find_dtype(entry.dtype);
    QNOISE_CHECK(info != nullptr, "safetensors: unsupported dtype '", entry.dtype, "' for '", entry.name, "'");
    QNOISE_CHECK(entry.tensor.defined() && entry.tensor.scalar_type() == info->torch_dtype, "safetensors: '",
                 entry.name, "' is declared ", entry.dtype, " but holds a tensor of another type");
    header[entry.name] = {{"dtype", entry.dtype}, {"shape", entry.tensor.sizes().vec()}};
  }
  int64_t offset = 0;
  for (const NamedTensor* entry : data_order(contents)) {
    const int64_t bytes = entry->tensor.numel() * find_dtype(entry->dtype)->size;
    header[entry->name]["data_offsets"] = {offset, offset + bytes};
    offset += bytes;
  }
  std::string text = header.dump();
  text.resize((text.size() + 7) / 8 * 8, ' ');
  return text;
}

[[noreturn]] void fail(const std::string& source, const std::string& problem) {
  throw Error("'" + source + "' is not a valid safetensors file: " + problem);
}

}  // namespace

const NamedTensor* SafetensorsContents::find(const std::string& name) const {
  for (const auto& entry : tensors)
    if (entry.name == name) return &entry;
  return nullptr;
}

const NamedTensor& SafetensorsContents::at(const std::string& name) const {
  const NamedTensor* entry = find(name);
  QNOISE_CHECK(entry != nullptr, "no tensor named '", name, "'");
  return *entry;
}

at::ScalarType torch_dtype_of(const std::string& safetensors_dtype) {
  const DtypeInfo* info = find_dtype(safetensors_dtype);
  QNOISE_CHECK(info != nullptr, "unsupported safetensors dtype '", safetensors_dtype, "'");
  return info->torch_dtype;
}

std::string safetensors_dtype_of(at::ScalarType dtype) {
  for (const auto& info : kDtypes)
    if (info.torch_dtype == dtype && std::strcmp(info.name, "U16") != 0) return info.name;
  throw Error(std::string("no safetensors dtype for torch dtype ") + c10::toString(dtype));
}

int64_t element_size_of(const std::string& safetensors_dtype) {
  const DtypeInfo* info = find_dtype(safetensors_dtype);
  QNOISE_CHECK(info != nullptr, "unsupported safetensors dtype '", safetensors_dtype, "'");
  return info->size;
}

int64_t safetensors_file_size(const SafetensorsContents& contents) {
  int64_t bytes = 8 + static_cast<int64_t>(header_json(contents).size());
  for (const auto& entry : contents.tensors) bytes += entry.tensor.numel() * element_size_of(entry.dtype);
  return bytes;
}

void write_safetensors(const std::string& path, const SafetensorsContents& contents) {
  const std::string header = header_json(contents);
  std::string length;
  put_u64_le(length, header.size());
  // Streamed: the tensors' bytes go to the file from their own memory, never copied whole.
  write_file_atomically(path, [&](const AppendBytes& append) {
    append(length.data(), length.size());
    append(header.data(), header.size());
    for (const NamedTensor* entry : data_order(contents)) {
      const at::Tensor data = entry->tensor.cpu().contiguous();
      if (data.numel() > 0) append(data.data_ptr(), static_cast<size_t>(data.numel() * data.element_size()));
    }
  });
}

namespace {

// The tensors a header describes, allocated but not filled, in the order of their data (which
// the checks below make back to back from byte 0 of the data section to its end).
SafetensorsContents parse_header(const std::string& header_text, uint64_t data_size, const std::string& source) {
  if (header_text.empty() || header_text[0] != '{') fail(source, "the header does not start with '{'");
  nlohmann::json header;
  try {
    header = parse_json_input(header_text, "the header");
  } catch (const Error& e) {
    fail(source, e.what());
  }
  if (!header.is_object()) fail(source, "the header is not a JSON object");
  SafetensorsContents contents;
  struct Span {
    uint64_t begin, end;
    size_t index;
  };
  std::vector<Span> spans;
  for (const auto& [name, value] : header.items()) {
    if (name == "__metadata__") {
      if (!value.is_object()) fail(source, "__metadata__ is not an object");
      for (const auto& [key, text] : value.items()) {
        if (!text.is_string()) fail(source, "__metadata__ value '" + key + "' is not a string");
        contents.metadata[key] = text.get<std::string>();
      }
      continue;
    }
    if (!value.is_object() || !value.contains("dtype") || !value.contains("shape") || !value.contains("data_offsets"))
      fail(source, "tensor '" + name + "' lacks dtype, shape or data_offsets");
    const auto& dtype = value["dtype"];
    if (!dtype.is_string() || find_dtype(dtype.get<std::string>()) == nullptr)
      fail(source, "tensor '" + name + "' has unsupported dtype " + dtype.dump());
    const DtypeInfo& info = *find_dtype(dtype.get<std::string>());
    const auto& shape_json = value["shape"];
    if (!shape_json.is_array() || shape_json.size() > 8) fail(source, "tensor '" + name + "' has a bad shape");
    std::vector<int64_t> shape;
    uint64_t numel = 1;
    for (const auto& dim : shape_json) {
      if (!dim.is_number_unsigned() || dim.get<uint64_t>() > (uint64_t{1} << 40))
        fail(source, "tensor '" + name + "' has a bad shape " + shape_json.dump());
      shape.push_back(dim.get<int64_t>());
      numel *= dim.get<uint64_t>();
      if (numel > (uint64_t{1} << 40)) fail(source, "tensor '" + name + "' is absurdly large");
    }
    const auto& offsets = value["data_offsets"];
    if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
        !offsets[1].is_number_unsigned())
      fail(source, "tensor '" + name + "' has bad data_offsets " + quote_json(offsets));
    const uint64_t begin = offsets[0].get<uint64_t>(), end = offsets[1].get<uint64_t>();
    if (begin > end || end > data_size)
      fail(source, "tensor '" + name + "' data_offsets " + offsets.dump() + " are outside the " +
                       std::to_string(data_size) + " data bytes: truncated?");
    if (end - begin != numel * static_cast<uint64_t>(info.size))
      fail(source, "tensor '" + name + "' has " + std::to_string(end - begin) + " bytes but shape " +
                       shape_to_string(shape) + " of " + info.name + " needs " +
                       std::to_string(numel * info.size));
    spans.push_back({begin, end, contents.tensors.size()});
    contents.tensors.push_back({name, info.name, at::empty(shape, at::TensorOptions().dtype(info.torch_dtype))});
  }
  // The data must be the tensors back to back: no gaps, no overlaps, nothing after them.
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) { return a.begin < b.begin; });
  uint64_t expected = 0;
  for (const auto& span : spans) {
    if (span.begin != expected)
      fail(source, "tensor '" + contents.tensors[span.index].name + "' starts at byte " +
                       std::to_string(span.begin) + " where " + std::to_string(expected) + " was expected (gap or overlap)");
    expected = span.end;
  }
  if (expected != data_size)
    fail(source, std::to_string(data_size - expected) + " bytes after the last tensor");
  // File order (the order of data), which is what the writer used.
  std::vector<NamedTensor> ordered;
  for (const auto& span : spans) ordered.push_back(std::move(contents.tensors[span.index]));
  contents.tensors = std::move(ordered);
  return contents;
}

uint64_t tensor_bytes(const at::Tensor& tensor) { return static_cast<uint64_t>(tensor.numel() * tensor.element_size()); }

}  // namespace

SafetensorsContents parse_safetensors(const std::string& bytes, const std::string& source) {
  if (bytes.size() < 8) fail(source, "it has " + std::to_string(bytes.size()) + " bytes, fewer than the 8-byte header length");
  const uint64_t header_size = get_u64_le(bytes);
  if (header_size > kMaxHeaderBytes) fail(source, "header length " + std::to_string(header_size) + " exceeds 100 MB");
  if (header_size > bytes.size() - 8)
    fail(source, "header length " + std::to_string(header_size) + " runs past the end of the file (" +
                     std::to_string(bytes.size()) + " bytes): truncated?");
  SafetensorsContents contents = parse_header(bytes.substr(8, header_size), bytes.size() - 8 - header_size, source);
  const char* data = bytes.data() + 8 + header_size;
  for (auto& entry : contents.tensors) {
    // An empty tensor has no memory (a null data pointer), which memcpy must not be given.
    if (tensor_bytes(entry.tensor) > 0) std::memcpy(entry.tensor.data_ptr(), data, tensor_bytes(entry.tensor));
    data += tensor_bytes(entry.tensor);
  }
  return contents;
}

SafetensorsContents read_safetensors(const std::string& path) {
  QNOISE_CHECK(std::filesystem::is_regular_file(path), "file '", path, "' does not exist");
  std::ifstream file(path, std::ios::binary);
  QNOISE_CHECK(file.good(), "cannot open '", path, "'");
  // Each tensor is read straight into its own memory, so loading never holds the file twice (the
  // peak memory of loading a compressed model).
  const uint64_t file_size = std::filesystem::file_size(path);
  std::string length(8, '\0');
  if (file_size < 8 || !file.read(length.data(), 8))
    fail(path, "it has " + std::to_string(file_size) + " bytes, fewer than the 8-byte header length");
  const uint64_t header_size = get_u64_le(length);
  if (header_size > kMaxHeaderBytes) fail(path, "header length " + std::to_string(header_size) + " exceeds 100 MB");
  if (header_size > file_size - 8)
    fail(path, "header length " + std::to_string(header_size) + " runs past the end of the file (" +
                   std::to_string(file_size) + " bytes): truncated?");
  std::string header(header_size, '\0');
  QNOISE_CHECK(file.read(header.data(), static_cast<std::streamsize>(header_size)), "cannot read '", path, "'");
  SafetensorsContents contents = parse_header(header, file_size - 8 - header_size, path);
  for (auto& entry : contents.tensors)
    QNOISE_CHECK(file.read(static_cast<char*>(entry.tensor.data_ptr()), static_cast<std::streamsize>(tensor_bytes(entry.tensor))),
                 "cannot read '", path, "': it ended inside tensor '", entry.name, "'");
  return contents;
}

}  // namespace qnoise
