// kvant/status.h: errors as values at the public API.
//
// Every public entry point returns Status or Result<T>. Inside the library,
// validation code may throw kvant::Error (see KVANT_CHECK); the API edge
// catches it and turns it into a Status, so a bad model or bad data never
// takes the host process down.
#pragma once

#include <stdexcept>
#include <string>
#include <utility>
#include <variant>

namespace kvant {

enum class ErrorCode {
  kOk = 0,
  kInvalidArgument,  // bad input: file, model, shape, data
  kUnsupported,      // valid ONNX that kvant does not implement (yet)
  kNotFound,         // missing file, tensor or node
  kInternal,
  kCancelled,  // a progress callback asked the call to stop (kvant.h: ProgressCallback)
};

class Status {
 public:
  Status() = default;
  Status(ErrorCode code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status ok_status() { return Status(); }

  bool ok() const { return code_ == ErrorCode::kOk; }
  ErrorCode code() const { return code_; }
  const std::string& message() const { return message_; }

 private:
  ErrorCode code_ = ErrorCode::kOk;
  std::string message_;
};

inline Status invalid_argument(std::string message) { return Status(ErrorCode::kInvalidArgument, std::move(message)); }
inline Status unsupported(std::string message) { return Status(ErrorCode::kUnsupported, std::move(message)); }
inline Status not_found(std::string message) { return Status(ErrorCode::kNotFound, std::move(message)); }

// A value or the Status that explains why there is none.
template <typename T>
class Result {
 public:
  Result(T value) : data_(std::move(value)) {}         // NOLINT: implicit by design
  Result(Status status) : data_(std::move(status)) {}  // NOLINT: implicit by design

  bool ok() const { return std::holds_alternative<T>(data_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(data_);
  }
  T& value() & { return std::get<T>(data_); }
  const T& value() const& { return std::get<T>(data_); }
  T&& value() && { return std::get<T>(std::move(data_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> data_;
};

// The exception used inside the library; converted to Status at the API edge.
class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const { return code_; }
  Status status() const { return Status(code_, what()); }

 private:
  ErrorCode code_;
};

}  // namespace kvant

#define KVANT_RETURN_IF_ERROR(expr)                \
  do {                                             \
    ::kvant::Status kvant_status_ = (expr);        \
    if (!kvant_status_.ok()) return kvant_status_; \
  } while (0)
