#pragma once
// Internal to the tunnel: the libssh side. Everything here runs on the worker thread, except
// SshShared, which the tunnel object and the worker share.

#include "result.h"
#include "sshtunnel.h"

#include <libssh/callbacks.h>
#include <libssh/libssh.h>

#include <QByteArray>
#include <QHash>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace slullama {

struct SshShared
{
    SshShared();
    ~SshShared();
    SshShared(const SshShared &) = delete;
    SshShared &operator=(const SshShared &) = delete;

    void wake() const;
    void drain() const;

    std::atomic<bool> stop {false};
    int wakeFd = -1; // eventfd: stop requests and prompt answers
    std::atomic<int> channels {0};
    std::atomic<quint64> bytesUp {0};
    std::atomic<quint64> bytesDown {0};
    std::atomic<int> boundPort {0};
};

class SshWorker final
{
public:
    SshWorker(SshTunnel *tunnel, quint64 generation, SshTunnelSettings settings,
              std::shared_ptr<SshShared> shared);
    ~SshWorker();
    SshWorker(const SshWorker &) = delete;
    SshWorker &operator=(const SshWorker &) = delete;

    void run();

private:
    struct Conn;
    enum class Outcome { Ok, Retry, Fatal, Stopped };
    struct Step
    {
        Outcome outcome;
        QString message;
    };

    // Special results of the non-blocking helpers, outside libssh's return codes.
    static constexpr int kStopped = -1000;
    static constexpr int kTimedOut = -1001;

    bool stopping() const { return m_shared->stop.load(std::memory_order_relaxed); }
    void report(SshTunnel::State state, const QString &error = {});
    void reportError(const QString &error);

    VoidResult openListener();
    void closeListener();
    bool sleepInterruptible(int ms);

    Step connectSession();
    Step verifyHostKey();
    Step authenticate();
    int tryKeyFile(const QString &path, QStringList &tried);
    void freeSession();
    QString sshError() const;
    QString hostEntry() const;
    QString userAtHost() const;

    template<typename F> int nonBlocking(F call, int again);
    int waitSession(std::chrono::steady_clock::time_point deadline);
    template<typename T>
    std::optional<T> ask(std::function<void(std::function<void(std::optional<T>)>)> post,
                         bool *stopped);
    static int authCallback(const char *prompt, char *buf, size_t len, int echo, int verify,
                            void *userdata);

    Step serve();
    void acceptConnections();
    void service(Conn *c);
    void pumpLocalToRemote(Conn *c);
    void pumpRemoteToLocal(Conn *c);
    void updateRegistration(Conn *c);
    void markDirty(Conn *c);
    void channelOpenFailed(Conn *c);
    void kill(Conn *c, const char *why);
    void reap();
    void closeAll();

    void collectLocalEvents();

    static int onEpollEvent(socket_t fd, int revents, void *userdata);
    static int onWakeEvent(socket_t fd, int revents, void *userdata);
    static int onListenEvent(socket_t fd, int revents, void *userdata);
    static int onChannelData(ssh_session, ssh_channel, void *data, uint32_t len, int isStderr,
                             void *userdata);
    static void onChannelEof(ssh_session, ssh_channel, void *userdata);
    static void onChannelClose(ssh_session, ssh_channel, void *userdata);

    SshTunnel *m_tunnel;
    quint64 m_generation;
    SshTunnelSettings m_settings;
    std::shared_ptr<SshShared> m_shared;

    int m_listenFd = -1;
    // The local connections are watched through one epoll fd in the libssh event: libssh polls
    // its whole event on every channel write (ssh_blocking_flush), so each fd there is paid for
    // per written packet.
    int m_epollFd = -1;
    bool m_epollReady = false;
    ssh_session m_session = nullptr;
    ssh_counter_struct m_socketCounter {}; // the session socket's bytes, kept by libssh
    ssh_event m_event = nullptr;
    struct ssh_callbacks_struct m_sessionCallbacks
    {
    };
    QString m_knownHostsFile;

    // Decrypted explicit identity, kept so a reconnect does not ask for the passphrase again.
    ssh_key m_key = nullptr;
    QString m_keyPath;
    QHash<QString, QByteArray> m_passphrases; // for identities found through ssh config
    bool m_callbackStopped = false;

    std::vector<Conn *> m_conns;
    std::vector<Conn *> m_ready;
    std::vector<Conn *> m_dirty;
    std::vector<Conn *> m_opening;
    std::vector<Conn *> m_blocked;
    std::vector<Conn *> m_dead;
    std::vector<ssh_channel> m_orphans; // channels still opening whose local client left
    bool m_listenReady = false;
    bool m_woken = false;
    std::vector<char> m_buf;
    QByteArray
        m_injectValue; // "Bearer <token>" for RequestHeadInjector; empty = none. Never logged.
    std::chrono::steady_clock::time_point m_lastChannelError {};
};

} // namespace slullama
