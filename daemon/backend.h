#pragma once

// What the HTTP proxy needs from the job lifecycle. Lifecycle implements it; proxy unit tests
// use a fake. Keeping this narrow lets the proxy and the lifecycle be tested apart.

#include "statusmodel.h"

#include <QString>

#include <functional>

namespace slullama {

// Where to send a request: the local end of the tunnel to the node's model server.
struct Upstream
{
    QString host = QStringLiteral("127.0.0.1");
    quint16 port = 0;
    quint64 generation = 0;  // changes with every boot (and tunnel rebuild)
    // The tunnel's local end as a Unix socket path (then host/port only name the Host header);
    // empty: TCP to host:port.
    QString localSocket;
};

struct AcquireResult
{
    bool ok = false;
    Upstream upstream;        // when ok
    int httpStatus = 0;       // when !ok: 502 (Slurm refused), 503 (unreachable), 504 (boot timeout)
    QString message;          // when !ok: what happened, with Slurm's own words where there are any
    double waitedSeconds = 0; // how long this request waited for a boot (0 when it was ready)
};

class Backend
{
public:
    using Ticket = quint64;
    using Callback = std::function<void(const AcquireResult &)>;

    virtual ~Backend() = default;

    // A request wants the model server. Counts the request as active from now on. `done` is called
    // exactly once: at once (synchronously) when ready, else when the boot succeeds or fails.
    virtual Ticket acquire(Callback done) = 0;
    // The client went away before `done` was called: drop it; the request is no longer active.
    virtual void cancel(Ticket ticket) = 0;
    // A request that acquired successfully has finished (completely, or aborted). Idle time
    // counts from the last release.
    virtual void release() = 0;
    // The same, naming the Upstream generation the request was given: lets a walltime
    // hand-over retire the old job as soon as its own requests are done, however busy the
    // successor is. Backends that do not care keep the plain release().
    virtual void release(quint64 generation)
    {
        Q_UNUSED(generation);
        release();
    }
    // The upstream could not be reached or broke mid-response: lets the lifecycle check the
    // tunnel and the job at once instead of waiting for its next poll.
    virtual void reportUpstreamFailure(quint64 generation, const QString &reason) = 0;

    // POST /slullama/wake: start a boot if sleeping; no request is held.
    virtual void wake() = 0;
    // POST /slullama/wake with a duration: wake, and do not end the job for being idle before
    // `minutes` from now (a later, shorter call never shortens an earlier promise).
    virtual void wakeFor(double minutes)
    {
        Q_UNUSED(minutes);
        wake();
    }
    virtual Status status() const = 0;
};

} // namespace slullama
