// A native reader and writer for NumPy's .npy format (versions 1.0, 2.0 and 3.0): little-endian complex64
// ('<c8'), float32 ('<f4') and float64 ('<f8') arrays in C order. Anything else — Fortran order, another
// dtype or byte order, a truncated or over-long data section, a malformed header — is a heimdall::Error
// (kErrFile) naming the file and what was expected.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/Tensor.h>

namespace heimdall {

struct NpyHeader {
  std::string descr;           // '<c8', '<f4' or '<f8'
  std::vector<int64_t> shape;  // () for a scalar
  int64_t data_offset = 0;     // bytes before the data
  int64_t item_size = 0;
  int64_t numel() const;
};

// Reads and checks the header (and that the file holds exactly the data the header announces).
NpyHeader read_npy_header(const std::string& path);

// Reads the whole array as a CPU tensor (complex64, float32 or float64). `expect` lists the accepted
// descrs (empty: any supported); a mismatch is an error naming the file, the found and the expected dtype.
at::Tensor read_npy(const std::string& path, const std::vector<std::string>& expect = {});

// Writes a contiguous CPU tensor of dtype complex64, float32 or float64 as a version 1.0 .npy file.
void write_npy(const std::string& path, const at::Tensor& tensor);

// 'complex64' for '<c8' etc., for messages.
std::string npy_dtype_name(const std::string& descr);

}  // namespace heimdall
