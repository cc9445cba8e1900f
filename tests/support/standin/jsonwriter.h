#pragma once

// Ordered JSON objects written straight into bytes. QJsonObject sorts keys and costs a tree per
// chunk; Ollama (Go structs) keeps field order, and the stand-in writes thousands of chunks a second.

#include <QByteArray>
#include <QByteArrayView>
#include <QString>

namespace slullama::standin {

inline void appendJsonString(QByteArray &out, QByteArrayView utf8)
{
    static constexpr char hex[] = "0123456789abcdef";
    out += '"';
    for (char c : utf8) {
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
            if (uchar(c) < 0x20) {
                out += "\\u00";
                out += hex[uchar(c) >> 4];
                out += hex[uchar(c) & 0xf];
            } else {
                out += c;
            }
        }
    }
    out += '"';
}

inline QByteArray jsonString(QByteArrayView utf8)
{
    QByteArray out;
    out.reserve(utf8.size() + 2);
    appendJsonString(out, utf8);
    return out;
}

inline QByteArray jsonString(const QByteArray &utf8)
{
    return jsonString(QByteArrayView(utf8));
}

inline QByteArray jsonString(const QString &s)
{
    return jsonString(QByteArrayView(s.toUtf8()));
}

class JsonObject
{
public:
    JsonObject() { m_out.reserve(256); m_out += '{'; }

    JsonObject &str(const char *key, QByteArrayView utf8)
    {
        appendKey(key);
        appendJsonString(m_out, utf8);
        return *this;
    }
    // Exact overloads, so literals and byte arrays never look like QStrings.
    JsonObject &str(const char *key, const char *utf8) { return str(key, QByteArrayView(utf8)); }
    JsonObject &str(const char *key, const QByteArray &utf8) { return str(key, QByteArrayView(utf8)); }
    JsonObject &str(const char *key, const QString &s) { return str(key, QByteArrayView(s.toUtf8())); }
    JsonObject &num(const char *key, qint64 v)
    {
        appendKey(key);
        m_out += QByteArray::number(v);
        return *this;
    }
    JsonObject &boolean(const char *key, bool v)
    {
        appendKey(key);
        m_out += v ? "true" : "false";
        return *this;
    }
    JsonObject &null(const char *key)
    {
        appendKey(key);
        m_out += "null";
        return *this;
    }
    // `json` must already be valid JSON (an object, array, number ...).
    JsonObject &raw(const char *key, QByteArrayView json)
    {
        appendKey(key);
        m_out += json;
        return *this;
    }
    JsonObject &raw(const char *key, const QByteArray &json) { return raw(key, QByteArrayView(json)); }
    JsonObject &raw(const char *key, const char *json) { return raw(key, QByteArrayView(json)); }
    QByteArray done() const
    {
        QByteArray out = m_out;
        out += '}';
        return out;
    }

private:
    void appendKey(const char *key)
    {
        if (m_out.size() > 1)
            m_out += ',';
        m_out += '"';
        m_out += key;
        m_out += "\":";
    }
    QByteArray m_out;
};

} // namespace slullama::standin
