// Protocol Buffers wire format, encode side only: just what the ONNX writer needs (varints, fixed32,
// length-delimited strings, bytes and nested messages). No protobuf library.
//
// A message is kept as a list of chunks, each either owned bytes or a reference to bytes that live elsewhere
// (tensor data), so a 700 MB model is written straight from the weights without being copied into one buffer.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace heimdall::protobuf {

enum class WireType : uint32_t { Varint = 0, Fixed64 = 1, LengthDelimited = 2, Fixed32 = 5 };

class Message {
 public:
  void add_varint(uint32_t field, uint64_t value);
  void add_int64(uint32_t field, int64_t value) { add_varint(field, static_cast<uint64_t>(value)); }  // two's complement
  void add_float(uint32_t field, float value);
  void add_string(uint32_t field, std::string_view value);
  // Bytes that stay where they are until write_to(): the caller keeps them alive.
  void add_bytes_ref(uint32_t field, const void* data, size_t size);
  void add_message(uint32_t field, Message&& child);

  size_t size() const { return size_; }
  void write_to(std::ostream& out) const;
  std::string to_string() const;  // for tests and small messages

 private:
  struct Chunk {
    std::string owned;
    const char* ref = nullptr;
    size_t ref_size = 0;
  };
  void put_tag(uint32_t field, WireType type);
  void put_varint(uint64_t value);
  void put_raw(const void* data, size_t size);
  std::string& tail();

  std::vector<Chunk> chunks_;
  size_t size_ = 0;
};

size_t varint_size(uint64_t value);

}  // namespace heimdall::protobuf
