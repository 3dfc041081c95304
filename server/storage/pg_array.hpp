#pragma once
// PgArray: builds a PostgreSQL array literal ('{"a","b"}') for one parameter of
// a set-based statement (INSERT ... SELECT FROM unnest($1::text[], ...)).
// Every element is double-quoted with '"' and '\' escaped, so any text without
// NUL is safe. Not thread-safe; build on one thread.

#include <cstdint>
#include <string>
#include <string_view>

namespace im::server {

class PgArray {
 public:
  PgArray() { text_.push_back('{'); }

  void reserve(std::size_t bytes) { text_.reserve(bytes); }

  void add(std::string_view value) {
    separator();
    text_.push_back('"');
    for (char c : value) {
      if (c == '"' || c == '\\') text_.push_back('\\');
      text_.push_back(c);
    }
    text_.push_back('"');
  }

  void add(std::int64_t value) {
    separator();
    text_ += std::to_string(value);
  }

  void add_null() {
    separator();
    text_ += "NULL";
  }

  /// The finished literal; the builder must not be used afterwards.
  std::string str() && {
    text_.push_back('}');
    return std::move(text_);
  }

 private:
  void separator() {
    if (text_.size() > 1) text_.push_back(',');
  }
  std::string text_;
};

}  // namespace im::server
