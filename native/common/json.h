// A small JSON value with a strict parser and a writer: enough for safetensors headers, checkpoint
// metadata and options passed as JSON. Plain C++, no torch.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace heimdall::json {

class Value {
 public:
  enum class Type { Null, Bool, Number, String, Array, Object };

  Value() = default;
  Value(std::nullptr_t) {}
  Value(bool b) : type_(Type::Bool), bool_(b) {}
  Value(double n) : type_(Type::Number), number_(n) {}
  Value(int n) : type_(Type::Number), number_(n) {}
  Value(int64_t n) : type_(Type::Number), number_(static_cast<double>(n)) {}
  Value(uint64_t n) : type_(Type::Number), number_(static_cast<double>(n)) {}
  Value(const char* s) : type_(Type::String), string_(s) {}
  Value(std::string s) : type_(Type::String), string_(std::move(s)) {}

  static Value array() { Value v; v.type_ = Type::Array; return v; }
  static Value object() { Value v; v.type_ = Type::Object; return v; }

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::Null; }
  bool is_number() const { return type_ == Type::Number; }
  bool is_string() const { return type_ == Type::String; }
  bool is_array() const { return type_ == Type::Array; }
  bool is_object() const { return type_ == Type::Object; }
  bool is_bool() const { return type_ == Type::Bool; }

  // Typed access; throws std::runtime_error naming `what` when the type differs.
  double as_number(const char* what = "value") const;
  int64_t as_int(const char* what = "value") const;
  bool as_bool(const char* what = "value") const;
  const std::string& as_string(const char* what = "value") const;
  const std::vector<Value>& as_array(const char* what = "value") const;
  const std::map<std::string, Value>& as_object(const char* what = "value") const;

  // Object helpers.
  bool has(const std::string& key) const;
  const Value& at(const std::string& key) const;  // throws if missing
  const Value* find(const std::string& key) const;  // nullptr if missing or not an object
  Value& operator[](const std::string& key);       // turns null into an object
  void push_back(Value v);                          // turns null into an array

  std::string dump() const;

 private:
  Type type_ = Type::Null;
  bool bool_ = false;
  double number_ = 0;
  std::string string_;
  std::vector<Value> array_;
  std::map<std::string, Value> object_;
};

// Parses a complete JSON text; throws std::runtime_error with the byte offset on malformed input.
Value parse(const std::string& text);

std::string quote(const std::string& s);

}  // namespace heimdall::json
