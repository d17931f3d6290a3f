// A minimal strict JSON reader for manifest.json (objects, arrays, strings, numbers, true/false/null), so the
// data library needs nothing outside native/data. Throws std::runtime_error with the byte offset.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace heimdall::manifest {

struct Json {
  enum class Type { Null, Bool, Number, String, Array, Object } type = Type::Null;
  bool boolean = false;
  double number = 0;
  std::string string;
  std::vector<Json> array;
  std::map<std::string, Json> object;

  const Json* find(const std::string& key) const;  // nullptr if missing or not an object
  double as_number(const std::string& what) const;
  const std::string& as_string(const std::string& what) const;
  const std::vector<Json>& as_array(const std::string& what) const;
};

Json parse(const std::string& text);

}  // namespace heimdall::manifest
