// The one exception type the native library throws for problems a user can fix. `code` is stable and
// reaches JavaScript as `error.code`; `what()` is the readable message (what was wrong, what to do).
#pragma once

#include <stdexcept>
#include <string>

namespace heimdall {

class Error : public std::runtime_error {
 public:
  Error(std::string code, const std::string& message) : std::runtime_error(message), code_(std::move(code)) {}
  const std::string& code() const { return code_; }

 private:
  std::string code_;
};

// Codes (also documented in lib/native.ts).
inline constexpr const char* kErrInvalidArgument = "HEIMDALL_INVALID_ARGUMENT";
inline constexpr const char* kErrShape = "HEIMDALL_SHAPE_MISMATCH";
inline constexpr const char* kErrUnknownVariant = "HEIMDALL_UNKNOWN_VARIANT";
inline constexpr const char* kErrFile = "HEIMDALL_BAD_FILE";
inline constexpr const char* kErrNonFinite = "HEIMDALL_NON_FINITE_LOSS";
inline constexpr const char* kErrDevice = "HEIMDALL_DEVICE_UNAVAILABLE";
inline constexpr const char* kErrWeights = "HEIMDALL_WEIGHTS_MISMATCH";
inline constexpr const char* kErrState = "HEIMDALL_INVALID_STATE";
// A process group could not form or a collective failed: a rank missing, dead or timed out (names the ranks).
inline constexpr const char* kErrDistributed = "HEIMDALL_DISTRIBUTED";

}  // namespace heimdall
