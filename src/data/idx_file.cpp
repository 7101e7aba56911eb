// IDX reader: zlib's gz* functions read gzip and plain files alike (plain ones "transparently"),
// so one code path serves both; the size of the file bounds what a header may claim, so a corrupt
// header can neither make us allocate absurd memory nor read past the end.
#include "qnoise/idx_file.h"

#include <ATen/ATen.h>
#include <zlib.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <filesystem>
#include <system_error>
#include <vector>

#include "qnoise/error.h"

namespace qnoise {
namespace {

constexpr int kMaxIdxDims = 8;
// deflate cannot compress better than about 1032:1, so a gzip file of n bytes holds at most
// ~1032 n bytes of data.
constexpr uint64_t kMaxDeflateRatio = 1032;
// Only an overflow guard for plain files: the file size is compared exactly afterwards.
constexpr uint64_t kMaxPlainBytes = uint64_t{1} << 62;
// Refuse to inflate more than 64 GiB whatever the header says: no real IDX set is that big.
constexpr uint64_t kMaxGzipDataBytes = uint64_t{1} << 36;
constexpr unsigned kReadChunkBytes = 1u << 26;

std::string hex32(uint32_t value) {
  char text[11];
  std::snprintf(text, sizeof(text), "0x%08X", value);
  return text;
}

std::string dtype_name(uint8_t dtype) {
  switch (dtype) {
    case 0x08: return "unsigned byte";
    case 0x09: return "signed byte";
    case 0x0B: return "int16";
    case 0x0C: return "int32";
    case 0x0D: return "float32";
    case 0x0E: return "float64";
    default: return "unknown";
  }
}

uint32_t big_endian_u32(const unsigned char* bytes) {
  return (uint32_t{bytes[0]} << 24) | (uint32_t{bytes[1]} << 16) | (uint32_t{bytes[2]} << 8) |
         uint32_t{bytes[3]};
}

// An open gz stream (gzip or plain) that closes itself.
class ByteStream {
 public:
  explicit ByteStream(const std::string& path) : path_(path), file_(gzopen(path.c_str(), "rb")) {
    QNOISE_CHECK(file_ != nullptr, "IDX file '", path, "': cannot open it");
    gzbuffer(file_, 1u << 17);
  }
  ~ByteStream() { gzclose(file_); }
  ByteStream(const ByteStream&) = delete;
  ByteStream& operator=(const ByteStream&) = delete;

  // Reads up to `count` bytes; returns how many were read (fewer only at the end of the data).
  uint64_t read(void* destination, uint64_t count) {
    auto* out = static_cast<unsigned char*>(destination);
    uint64_t done = 0;
    while (done < count) {
      const unsigned chunk = static_cast<unsigned>(std::min<uint64_t>(count - done, kReadChunkBytes));
      const int got = gzread(file_, out + done, chunk);
      if (got < 0) {
        int code = 0;
        const char* message = gzerror(file_, &code);
        QNOISE_CHECK(false, "IDX file '", path_, "': read failed (", message, ")");
      }
      if (got == 0) {
        // zlib reports a gzip stream cut short (even just its trailer) as Z_BUF_ERROR, not -1.
        int code = Z_OK;
        const char* message = gzerror(file_, &code);
        QNOISE_CHECK(code == Z_OK, "IDX file '", path_, "': truncated gzip stream (", message, ")");
        break;
      }
      done += static_cast<uint64_t>(got);
    }
    return done;
  }
  bool is_gzip() { return gzdirect(file_) == 0; }

 private:
  std::string path_;
  gzFile file_;
};

uint64_t file_size_of(const std::string& path) {
  std::error_code error;
  const auto status = std::filesystem::status(path, error);
  QNOISE_CHECK(std::filesystem::exists(status), "IDX file '", path, "': no such file");
  // A directory or device (e.g. /dev/zero) would fail or never end: accept only regular files.
  QNOISE_CHECK(std::filesystem::is_regular_file(status), "IDX file '", path,
               "': not a regular file");
  const auto size = std::filesystem::file_size(path, error);
  QNOISE_CHECK(!error, "IDX file '", path, "': cannot read its size (", error.message(), ")");
  return size;
}

struct IdxHeader {
  uint32_t magic = 0;
  std::vector<int64_t> dims;
  uint64_t bytes = 0;  // 4-byte magic + 4 bytes per dim
};

IdxHeader read_header(ByteStream& stream, const std::string& path) {
  unsigned char magic_bytes[4];
  QNOISE_CHECK(stream.read(magic_bytes, 4) == 4, "IDX file '", path,
               "': truncated before the end of its 4-byte magic");
  IdxHeader header;
  header.magic = big_endian_u32(magic_bytes);
  QNOISE_CHECK(magic_bytes[0] == 0 && magic_bytes[1] == 0, "IDX file '", path, "': bad magic ",
               hex32(header.magic), " (an IDX magic starts with two zero bytes)");
  QNOISE_CHECK(magic_bytes[2] == 0x08, "IDX file '", path, "': dtype 0x", std::hex,
               int{magic_bytes[2]}, std::dec, " (", dtype_name(magic_bytes[2]),
               ") is not supported; only unsigned byte (0x08) is");
  const int dim_count = magic_bytes[3];
  QNOISE_CHECK(dim_count >= 1 && dim_count <= kMaxIdxDims, "IDX file '", path, "': ", dim_count,
               " dims in magic ", hex32(header.magic), "; expected 1 to ", kMaxIdxDims);
  std::vector<unsigned char> dim_bytes(4 * dim_count);
  QNOISE_CHECK(stream.read(dim_bytes.data(), dim_bytes.size()) == dim_bytes.size(), "IDX file '",
               path, "': truncated inside its header (", dim_count, " dims expected)");
  for (int d = 0; d < dim_count; ++d) header.dims.push_back(big_endian_u32(&dim_bytes[4 * d]));
  header.bytes = 4 + dim_bytes.size();
  return header;
}

std::string shape_text(const std::vector<int64_t>& dims) {
  std::string text = "[";
  for (size_t d = 0; d < dims.size(); ++d) text += (d ? ", " : "") + std::to_string(dims[d]);
  return text + "]";
}

// Number of data bytes the dims promise, refused before any allocation when it exceeds
// `max_bytes` (what the file could possibly hold); the check also rules out overflow.
uint64_t checked_data_bytes(const IdxHeader& header, uint64_t max_bytes, const std::string& path) {
  uint64_t product = 1;
  for (int64_t dim : header.dims) {
    const auto d = static_cast<uint64_t>(dim);
    QNOISE_CHECK(d == 0 || product <= max_bytes / d, "IDX file '", path, "': dims ",
                 shape_text(header.dims), " claim more data than a file of its size can hold");
    product *= d;
  }
  return product;
}

}  // namespace

at::Tensor read_idx_file(const std::string& path) {
  const uint64_t file_size = file_size_of(path);
  ByteStream stream(path);
  const IdxHeader header = read_header(stream, path);
  const bool gzip = stream.is_gzip();
  const uint64_t plain_data_bytes = file_size - header.bytes;
  // Plain files: anything over the file size is a truncation. Gzip files: over the deflate bound
  // it cannot be real data; within it, a short stream shows up as a short read below.
  const uint64_t max_bytes =
      gzip ? std::min(file_size * kMaxDeflateRatio, kMaxGzipDataBytes) : kMaxPlainBytes;
  const uint64_t data_bytes = checked_data_bytes(header, max_bytes, path);
  if (!gzip) {
    QNOISE_CHECK(data_bytes <= plain_data_bytes, "IDX file '", path, "': truncated: dims ",
                 shape_text(header.dims), " need ", data_bytes, " data bytes, file has ",
                 plain_data_bytes);
  }
  at::Tensor data = at::empty(header.dims, at::kByte);
  const uint64_t got = stream.read(data.data_ptr<uint8_t>(), data_bytes);
  QNOISE_CHECK(got == data_bytes, "IDX file '", path, "': truncated: dims ",
               shape_text(header.dims), " need ", data_bytes, " data bytes, found ", got);
  unsigned char extra;
  QNOISE_CHECK(stream.read(&extra, 1) == 0, "IDX file '", path,
               "': trailing bytes after the ", data_bytes, " data bytes of dims ",
               shape_text(header.dims));
  return data;
}

at::Tensor read_idx_file(const std::string& path, uint32_t expected_magic) {
  at::Tensor data = read_idx_file(path);
  const auto dim_count = static_cast<int64_t>(expected_magic & 0xFF);
  QNOISE_CHECK(data.dim() == dim_count, "IDX file '", path, "': magic ",
               hex32(0x0800u | static_cast<uint32_t>(data.dim())), " (", data.dim(),
               " dims), expected ", hex32(expected_magic), " (", dim_count, " dims)");
  return data;
}

}  // namespace qnoise
