// NumPy .npy files: the tensors users feed to `kvant run` and get back.
//
// Format (numpy.lib.format, versions 1.0, 2.0 and 3.0):
//   bytes 0..5   magic "\x93NUMPY"
//   bytes 6, 7   major, minor version (1.0, 2.0 or 3.0)
//   then         header length: uint16 LE (1.0) or uint32 LE (2.0, 3.0)
//   then         header: a Python dict literal, ASCII (1.0, 2.0) or UTF-8 (3.0),
//                e.g. {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
//                padded with spaces and ended by '\n'
//   then         the data: prod(shape) elements, C order, no padding
//
// Supported descr: f4 f8 f2 i1 u1 i2 u2 i4 u4 i8 u8 b1, little-endian ('<'),
// not applicable ('|') or native ('=', this host is little-endian).
// Big-endian data, fortran_order=True, structured and object dtypes are
// refused with a clear message. Every size read from the file is checked
// before use: the data length must equal prod(shape) * itemsize exactly, and
// the shape must not overflow (checked_numel), so a hostile header never makes
// kvant allocate or read what the file does not hold.
#pragma once

#include <cstddef>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>

#include "ir/tensor.h"
#include "kvant/status.h"

namespace kvant {

// Reads a .npy file. Errors name the file.
Result<Tensor> read_npy(const std::filesystem::path& file);

// Parses .npy bytes held in memory; `display_name` prefixes error messages.
Result<Tensor> parse_npy(std::string_view bytes, const std::string& display_name = "<memory>");

// Reads a .npy of `total_size` bytes from a sequential source: `read(out, n)`
// fills up to n bytes and returns how many (fewer only at the end). The data
// goes straight into the tensor, which is allocated only after the header
// and total_size agree (a .npz member is inflated this way, never held twice).
// Throws Error without a name prefix (the caller adds it).
using NpyByteReader = std::function<size_t(void* out, size_t n)>;
Tensor read_npy_stream(const NpyByteReader& read, uint64_t total_size);

// Serializes a tensor as .npy (version 1.0, or 2.0 when the header needs it).
// bfloat16, int4 and uint4 have no NumPy type: kUnsupported.
Result<std::string> encode_npy(const Tensor& tensor);

// Writes a tensor to `file` as io/output_file.h says: a temporary created
// exclusively in the same folder, renamed over `file` (only a regular file)
// once fully written, so a failure never leaves a half-written file behind.
Status write_npy(const std::filesystem::path& file, const Tensor& tensor);

// The NumPy descr kvant writes for a dtype ("<f4", "|u1", ...); nullptr when
// NumPy has no such type.
const char* npy_descr(DType dtype);

}  // namespace kvant
