// Chunked bodies (requests from clients, responses from the model server): the decoder must give
// the same answer however the bytes are split, with or without an output buffer, and what it
// decodes re-encodes to a body it decodes to the same payload.

#include "fuzzcheck.h"
#include "httpparser.h"

#include <cstddef>
#include <cstdint>

using namespace slullama::http;

namespace {

struct Outcome
{
    QByteArray payload;
    qsizetype consumed = 0;
    bool done = false;
    bool error = false;

    bool operator==(const Outcome &) const = default;
};

// Feeds `input` in pieces whose sizes come from `splits` (cycled; 0 = one byte).
Outcome decode(QByteArrayView input, QByteArrayView splits, qint64 maxChunk, bool withOutput)
{
    ChunkedDecoder decoder(maxChunk);
    Outcome o;
    qsizetype pos = 0;
    qsizetype k = 0;
    while (pos < input.size()) {
        qsizetype len = input.size() - pos;
        if (!splits.isEmpty()) {
            const auto s = static_cast<unsigned char>(splits[k++ % splits.size()]);
            len = std::min<qsizetype>(len, std::max<qsizetype>(1, s));
        }
        const auto step = decoder.feed(input.sliced(pos, len), withOutput ? &o.payload : nullptr);
        FUZZ_CHECK(step.consumed >= 0 && step.consumed <= len);
        o.consumed += step.consumed;
        if (step.error) {
            FUZZ_CHECK(!step.errorText.isEmpty());
            FUZZ_CHECK(decoder.hasFailed());
            o.error = true;
            break;
        }
        if (step.done) {
            FUZZ_CHECK(decoder.isDone());
            o.done = true;
            break;
        }
        // Until done or failed, the decoder takes everything it is given.
        FUZZ_CHECK(step.consumed == len);
        pos += len;
    }
    if (o.done || o.error) {
        // After the end nothing more is consumed.
        const auto after = decoder.feed("5\r\nhello\r\n0\r\n\r\n", nullptr);
        FUZZ_CHECK(after.consumed == 0);
    }
    return o;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    // Layout: [mode][n][n split sizes][body]
    QByteArrayView all(reinterpret_cast<const char *>(data), qsizetype(size));
    if (all.size() < 2)
        return 0;
    const auto mode = static_cast<unsigned char>(all[0]);
    const qsizetype n
        = std::min<qsizetype>(static_cast<unsigned char>(all[1]) % 16, all.size() - 2);
    const QByteArrayView splits = all.sliced(2, n);
    const QByteArrayView body = all.sliced(2 + n);
    const qint64 maxChunk = (mode & 1) ? 64 : qint64(1) << 40;

    const Outcome whole = decode(body, {}, maxChunk, true);
    const Outcome bytewise = decode(body, "\x01", maxChunk, true);
    const Outcome split = decode(body, splits, maxChunk, true);
    const Outcome blind = decode(body, splits, maxChunk, false);
    FUZZ_CHECK(whole == bytewise);
    FUZZ_CHECK(whole == split);
    FUZZ_CHECK(blind.consumed == whole.consumed && blind.done == whole.done
               && blind.error == whole.error && blind.payload.isEmpty());
    FUZZ_CHECK(whole.payload.size() <= whole.consumed);

    if (whole.done) {
        QByteArray again = encodeChunk(whole.payload) + lastChunk();
        const Outcome re = decode(again, {}, qint64(1) << 40, true);
        FUZZ_CHECK(re.done && re.consumed == again.size() && re.payload == whole.payload);
    }
    return 0;
}
