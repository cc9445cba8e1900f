#pragma once

#include <QString>

#include <optional>
#include <utility>

namespace slullama {

// An error a user can act on: the message says what failed and, where it can, what to do.
struct Error
{
    QString message;
};

inline Error makeError(QString message)
{
    return Error{std::move(message)};
}

// A small expected<T, Error>: C++20 has no std::expected and clang 14 (used for fuzzing)
// cannot compile libstdc++'s C++23 one. Fallible functions return this instead of throwing.
template<typename T>
class [[nodiscard]] Result
{
public:
    Result(T value) : m_value(std::move(value)) {}
    Result(Error error) : m_error(std::move(error.message)) {}

    bool hasValue() const { return m_value.has_value(); }
    explicit operator bool() const { return hasValue(); }

    T &value() & { return *m_value; }
    const T &value() const & { return *m_value; }
    T &&value() && { return std::move(*m_value); }
    T &operator*() & { return *m_value; }
    const T &operator*() const & { return *m_value; }
    T *operator->() { return &*m_value; }
    const T *operator->() const { return &*m_value; }

    const QString &error() const { return m_error; }

private:
    std::optional<T> m_value;
    QString m_error;
};

// For operations that only succeed or fail: Result<Ok>. (No `Status` alias: slullama::Status is
// the daemon status of statusmodel.h, and both names in one namespace do not compile.)
struct Ok
{
};
using VoidResult = Result<Ok>;

} // namespace slullama
