#include "data/heimdall/npy.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <fstream>
#include <sstream>

#include <ATen/ATen.h>

#include "errors.h"

namespace heimdall {

namespace {

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw Error(kErrFile, "bad .npy file '" + path + "': " + what);
}

int64_t item_size_of(const std::string& descr) {
  if (descr == "<c8") return 8;
  if (descr == "<f4") return 4;
  if (descr == "<f8") return 8;
  return 0;
}

at::ScalarType scalar_type_of(const std::string& descr) {
  if (descr == "<c8") return at::kComplexFloat;
  if (descr == "<f4") return at::kFloat;
  return at::kDouble;
}

// A tiny parser for the header's Python dict literal: {'descr': '<f4', 'fortran_order': False, 'shape': (2,), }
struct HeaderParser {
  const std::string& s;
  const std::string& path;
  size_t i = 0;
  void ws() {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  }
  bool eat(char c) {
    ws();
    if (i < s.size() && s[i] == c) {
      ++i;
      return true;
    }
    return false;
  }
  void expect(char c) {
    if (!eat(c)) fail(path, std::string("malformed header (expected '") + c + "' at offset " + std::to_string(i) + ")");
  }
  std::string str() {
    ws();
    if (i >= s.size() || (s[i] != '\'' && s[i] != '"')) fail(path, "malformed header (expected a string)");
    const char q = s[i++];
    const size_t start = i;
    while (i < s.size() && s[i] != q) ++i;
    if (i >= s.size()) fail(path, "malformed header (unterminated string)");
    return s.substr(start, i++ - start);
  }
  std::string word() {
    ws();
    const size_t start = i;
    while (i < s.size() && (std::isalnum(static_cast<unsigned char>(s[i])) || s[i] == '_')) ++i;
    return s.substr(start, i - start);
  }
  std::vector<int64_t> tuple() {
    expect('(');
    std::vector<int64_t> v;
    while (!eat(')')) {
      const std::string w = word();
      if (w.empty() || !std::all_of(w.begin(), w.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); }))
        fail(path, "malformed header (bad shape)");
      v.push_back(std::stoll(w));
      if (!eat(',')) {
        expect(')');
        break;
      }
    }
    return v;
  }
};

}  // namespace

int64_t NpyHeader::numel() const {
  int64_t n = 1;
  for (auto d : shape) {
    if (d < 0 || __builtin_mul_overflow(n, d, &n)) return -1;  // not a size any file can hold
  }
  return n;
}

std::string npy_dtype_name(const std::string& descr) {
  if (descr == "<c8") return "complex64 ('<c8')";
  if (descr == "<f4") return "float32 ('<f4')";
  if (descr == "<f8") return "float64 ('<f8')";
  return "'" + descr + "'";
}

NpyHeader read_npy_header(const std::string& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) throw Error(kErrFile, "cannot open .npy file '" + path + "'");
  const int64_t file_size = static_cast<int64_t>(f.tellg());
  f.seekg(0);
  char pre[8];
  if (file_size < 10 || !f.read(pre, 8) || std::memcmp(pre, "\x93NUMPY", 6) != 0)
    fail(path, "not a NumPy .npy file (missing the \\x93NUMPY magic)");
  const int major = static_cast<unsigned char>(pre[6]);
  int64_t header_len = 0, prefix = 0;
  if (major == 1) {
    unsigned char b[2];
    if (!f.read(reinterpret_cast<char*>(b), 2)) fail(path, "truncated header");
    header_len = b[0] | (b[1] << 8);
    prefix = 10;
  } else if (major == 2 || major == 3) {
    unsigned char b[4];
    if (!f.read(reinterpret_cast<char*>(b), 4)) fail(path, "truncated header");
    header_len = static_cast<int64_t>(b[0]) | (static_cast<int64_t>(b[1]) << 8) | (static_cast<int64_t>(b[2]) << 16) |
                 (static_cast<int64_t>(b[3]) << 24);
    prefix = 12;
  } else {
    fail(path, "unsupported format version " + std::to_string(major) + " (expected 1, 2 or 3)");
  }
  if (prefix + header_len > file_size) fail(path, "truncated header");
  std::string text(static_cast<size_t>(header_len), '\0');
  f.read(text.data(), header_len);

  NpyHeader h;
  bool have_descr = false, have_order = false, have_shape = false, fortran = false;
  HeaderParser p{text, path};
  p.expect('{');
  while (!p.eat('}')) {
    const std::string key = p.str();
    p.expect(':');
    if (key == "descr") {
      h.descr = p.str();
      have_descr = true;
    } else if (key == "fortran_order") {
      const std::string w = p.word();
      if (w != "True" && w != "False") fail(path, "malformed header (fortran_order)");
      fortran = w == "True";
      have_order = true;
    } else if (key == "shape") {
      h.shape = p.tuple();
      have_shape = true;
    } else {
      fail(path, "unexpected header key '" + key + "'");
    }
    if (!p.eat(',')) {
      p.expect('}');
      break;
    }
  }
  if (!have_descr || !have_order || !have_shape) fail(path, "header lacks descr, fortran_order or shape");
  if (fortran) fail(path, "Fortran-ordered arrays are not supported (expected C order; save with np.ascontiguousarray)");
  h.item_size = item_size_of(h.descr);
  if (h.item_size == 0)
    fail(path, "unsupported dtype '" + h.descr + "' (expected little-endian complex64 '<c8', float32 '<f4' or float64 '<f8')");
  h.data_offset = prefix + header_len;
  int64_t want = 0;
  if (h.numel() < 0 || __builtin_mul_overflow(h.numel(), static_cast<int64_t>(h.item_size), &want))
    fail(path, "malformed header (the shape's size overflows)");
  const int64_t have = file_size - h.data_offset;
  if (have < want)
    fail(path, "truncated data: the header announces " + std::to_string(h.numel()) + " values (" + std::to_string(want) +
                   " bytes) but the file holds " + std::to_string(have) + " bytes");
  if (have > want)
    fail(path, std::to_string(have - want) + " unexpected bytes after the " + std::to_string(want) + " bytes of data");
  return h;
}

at::Tensor read_npy(const std::string& path, const std::vector<std::string>& expect) {
  NpyHeader h = read_npy_header(path);
  if (!expect.empty() && std::find(expect.begin(), expect.end(), h.descr) == expect.end()) {
    std::string want;
    for (size_t k = 0; k < expect.size(); ++k) want += (k ? " or " : "") + npy_dtype_name(expect[k]);
    fail(path, "dtype is " + npy_dtype_name(h.descr) + ", expected " + want);
  }
  at::Tensor t = at::empty(h.shape, at::TensorOptions().dtype(scalar_type_of(h.descr)));
  std::ifstream f(path, std::ios::binary);
  f.seekg(h.data_offset);
  if (!f.read(reinterpret_cast<char*>(t.data_ptr()), h.numel() * h.item_size)) fail(path, "truncated data");
  return t;
}

void write_npy(const std::string& path, const at::Tensor& tensor) {
  std::string descr;
  switch (tensor.scalar_type()) {
    case at::kComplexFloat: descr = "<c8"; break;
    case at::kFloat: descr = "<f4"; break;
    case at::kDouble: descr = "<f8"; break;
    default: throw Error(kErrInvalidArgument, "write_npy: unsupported dtype " + std::string(c10::toString(tensor.scalar_type())));
  }
  at::Tensor t = tensor.cpu().contiguous();
  std::ostringstream dict;
  dict << "{'descr': '" << descr << "', 'fortran_order': False, 'shape': (";
  for (int64_t d = 0; d < t.dim(); ++d) dict << t.size(d) << (t.dim() == 1 || d + 1 < t.dim() ? "," : "") << (d + 1 < t.dim() ? " " : "");
  dict << "), }";
  std::string header = dict.str();
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header.push_back('\n');
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) throw Error(kErrFile, "cannot write .npy file '" + path + "'");
  const uint16_t len = static_cast<uint16_t>(header.size());
  f.write("\x93NUMPY\x01\x00", 8);
  const char lb[2] = {static_cast<char>(len & 0xff), static_cast<char>(len >> 8)};
  f.write(lb, 2);
  f.write(header.data(), static_cast<std::streamsize>(header.size()));
  f.write(reinterpret_cast<const char*>(t.data_ptr()), static_cast<std::streamsize>(t.numel() * t.element_size()));
  if (!f) throw Error(kErrFile, "failed writing .npy file '" + path + "'");
}

}  // namespace heimdall
