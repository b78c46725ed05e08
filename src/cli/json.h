// A tiny JSON value and writer for `kvant inspect --json` (no dependency).
//
// Objects keep insertion order. Strings are escaped per RFC 8259; bytes that
// are not valid UTF-8 (names in a hand-made model can be anything) become
// U+FFFD, so the output always parses. NaN and infinities become null.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace kvant::cli {

class Json {
 public:
  enum class Kind { kNull, kBool, kInt, kDouble, kString, kArray, kObject };

  Json() = default;
  Json(bool b) : kind_(Kind::kBool), bool_(b) {}                        // NOLINT
  Json(int v) : kind_(Kind::kInt), int_(v) {}                           // NOLINT
  Json(int64_t v) : kind_(Kind::kInt), int_(v) {}                       // NOLINT
  Json(double v) : kind_(Kind::kDouble), double_(v) {}                  // NOLINT
  Json(std::string s) : kind_(Kind::kString), string_(std::move(s)) {}  // NOLINT
  Json(const char* s) : kind_(Kind::kString), string_(s) {}             // NOLINT
  static Json array() { return Json(Kind::kArray); }
  static Json object() { return Json(Kind::kObject); }

  Json& push(Json value);                  // appends to an array
  Json& set(std::string key, Json value);  // adds a key to an object
  std::string dump(int indent = 2) const;  // pretty-printed, ends without newline

  // Reading back (the HTML report renders the JSON it would write).
  Kind kind() const { return kind_; }
  const Json* find(const std::string& key) const;            // an object's member, or null
  const std::vector<Json>& items() const { return items_; }  // array items / object values
  double number() const;                                     // int or double; NaN for any other kind
  const std::string& str() const { return string_; }         // "" unless a string
  bool truthy() const { return kind_ == Kind::kBool && bool_; }

 private:
  explicit Json(Kind kind) : kind_(kind) {}
  void write(std::string& out, int indent, int depth) const;

  Kind kind_ = Kind::kNull;
  bool bool_ = false;
  int64_t int_ = 0;
  double double_ = 0;
  std::string string_;
  std::vector<std::string> keys_;  // objects
  std::vector<Json> items_;        // array items or object values
};

// `text` as a JSON string literal, quotes included.
std::string json_quote(const std::string& text);

}  // namespace kvant::cli
