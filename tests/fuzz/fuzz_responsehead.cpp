// HTTP response heads as the proxy reads them from the model server (through the tunnel):
// never crash, and the framing decision is always one of the defined answers.

#include "fuzzcheck.h"
#include "httpparser.h"

#include <cstddef>
#include <cstdint>

using namespace slullama::http;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Limits limits;
    QByteArrayView input(reinterpret_cast<const char *>(data), qsizetype(size));
    bool headRequest = false;
    if (!input.isEmpty()) {
        const auto mode = static_cast<unsigned char>(input.front());
        input = input.sliced(1);
        headRequest = (mode & 1) != 0;
        if (mode & 2) {
            limits.maxHeadBytes = 512;
            limits.maxLineLength = 128;
            limits.maxHeaderCount = 8;
        }
    }

    const auto parsed = parseResponseHead(input, limits);
    if (parsed.state == ParseState::Incomplete) {
        FUZZ_CHECK(parsed.consumed == 0);
        return 0;
    }
    if (parsed.state == ParseState::Error) {
        FUZZ_CHECK(parsed.errorStatus == 502);
        FUZZ_CHECK(!parsed.error.isEmpty());
        return 0;
    }
    const ResponseHead &head = parsed.head;
    FUZZ_CHECK(parsed.consumed > 0 && parsed.consumed <= input.size());
    FUZZ_CHECK(head.status >= 100 && head.status <= 999);
    FUZZ_CHECK(head.headers.size() <= limits.maxHeaderCount);

    const auto alone = parseResponseHead(input.first(parsed.consumed), limits);
    FUZZ_CHECK(alone.state == ParseState::Complete && alone.consumed == parsed.consumed);

    const BodyFraming framing = responseBodyFraming(headRequest ? "HEAD" : "GET", head);
    FUZZ_CHECK(framing.kind != BodyFraming::Length || framing.length >= 0);
    if (headRequest || head.status == 204 || head.status == 304 || head.status < 200)
        FUZZ_CHECK(framing.kind == BodyFraming::None);

    const QByteArray again = serialize(head);
    Limits roomy = limits;
    roomy.maxHeadBytes = again.size() + 1;
    roomy.maxLineLength = again.size() + 1;
    const auto reparsed = parseResponseHead(again, roomy);
    FUZZ_CHECK(reparsed.state == ParseState::Complete);
    FUZZ_CHECK(reparsed.head.status == head.status);
    FUZZ_CHECK(reparsed.head.headers.size() == head.headers.size());
    return 0;
}
