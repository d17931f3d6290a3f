#include "onnx/protobuf.h"

#include <cstring>

namespace heimdall::protobuf {

namespace {
// Referenced chunks smaller than this are copied: a pointer chunk costs more than the bytes.
constexpr size_t kMinReferencedBytes = 256;
}  // namespace

size_t varint_size(uint64_t value) {
  size_t n = 1;
  while (value >= 0x80) {
    value >>= 7;
    ++n;
  }
  return n;
}

std::string& Message::tail() {
  if (chunks_.empty() || chunks_.back().ref != nullptr) chunks_.emplace_back();
  return chunks_.back().owned;
}

void Message::put_varint(uint64_t value) {
  std::string& t = tail();
  while (value >= 0x80) {
    t.push_back(static_cast<char>((value & 0x7f) | 0x80));
    value >>= 7;
    ++size_;
  }
  t.push_back(static_cast<char>(value));
  ++size_;
}

void Message::put_raw(const void* data, size_t size) {
  tail().append(static_cast<const char*>(data), size);
  size_ += size;
}

void Message::put_tag(uint32_t field, WireType type) {
  put_varint((static_cast<uint64_t>(field) << 3) | static_cast<uint32_t>(type));
}

void Message::add_varint(uint32_t field, uint64_t value) {
  put_tag(field, WireType::Varint);
  put_varint(value);
}

void Message::add_float(uint32_t field, float value) {
  put_tag(field, WireType::Fixed32);
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  const unsigned char le[4] = {static_cast<unsigned char>(bits), static_cast<unsigned char>(bits >> 8),
                               static_cast<unsigned char>(bits >> 16), static_cast<unsigned char>(bits >> 24)};
  put_raw(le, 4);
}

void Message::add_string(uint32_t field, std::string_view value) {
  put_tag(field, WireType::LengthDelimited);
  put_varint(value.size());
  put_raw(value.data(), value.size());
}

void Message::add_bytes_ref(uint32_t field, const void* data, size_t size) {
  put_tag(field, WireType::LengthDelimited);
  put_varint(size);
  if (size < kMinReferencedBytes) {
    put_raw(data, size);
    return;
  }
  Chunk c;
  c.ref = static_cast<const char*>(data);
  c.ref_size = size;
  chunks_.push_back(std::move(c));
  size_ += size;
}

void Message::add_message(uint32_t field, Message&& child) {
  put_tag(field, WireType::LengthDelimited);
  put_varint(child.size_);
  for (auto& c : child.chunks_) {
    if (c.ref != nullptr) {
      chunks_.push_back(std::move(c));
    } else {
      tail().append(c.owned);
    }
  }
  size_ += child.size_;
  child.chunks_.clear();
  child.size_ = 0;
}

void Message::write_to(std::ostream& out) const {
  for (const auto& c : chunks_) {
    if (c.ref != nullptr) {
      out.write(c.ref, static_cast<std::streamsize>(c.ref_size));
    } else {
      out.write(c.owned.data(), static_cast<std::streamsize>(c.owned.size()));
    }
  }
}

std::string Message::to_string() const {
  std::string s;
  s.reserve(size_);
  for (const auto& c : chunks_) {
    if (c.ref != nullptr) {
      s.append(c.ref, c.ref_size);
    } else {
      s.append(c.owned);
    }
  }
  return s;
}

}  // namespace heimdall::protobuf
