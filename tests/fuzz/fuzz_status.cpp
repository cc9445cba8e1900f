// /slullama/status answers as the CLI and the tray read them (from any server on the port):
// Status::fromJson never crashes, and what it accepts round-trips through toJson unchanged.

#include "fuzzcheck.h"
#include "statusmodel.h"

#include <QJsonDocument>

#include <cstddef>
#include <cstdint>

using namespace slullama;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const QByteArray json(reinterpret_cast<const char *>(data), qsizetype(size));
    const auto status = Status::fromJson(json);
    if (!status) {
        FUZZ_CHECK(!status.error().isEmpty());
        return 0;
    }
    const QByteArray once = QJsonDocument(status->toJson()).toJson(QJsonDocument::Compact);
    const auto again = Status::fromJson(once);
    FUZZ_CHECK(again.hasValue());
    const QByteArray twice = QJsonDocument(again->toJson()).toJson(QJsonDocument::Compact);
    if (once != twice) {
        std::fprintf(stderr, "status JSON changes on a round trip:\n%s\n%s\n", once.constData(),
                     twice.constData());
        FUZZ_CHECK(once == twice);
    }
    return 0;
}
