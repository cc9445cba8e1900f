#include "sshworker.h"

#include "logging.h"
#include "requestheadinjector.h"

#include <QByteArray>
#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QMessageAuthenticationCode>
#include <QMetaObject>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

namespace slullama {

using Clock = std::chrono::steady_clock;

namespace {

constexpr size_t kBufferSize = 256 * 1024;
constexpr int kAcceptBurst = 64;
constexpr int kReadBurst = 8;
constexpr int kOne = 1;
// libssh 0.10 reads its socket in MAX_BUF_SIZE (4 KiB) pieces, one read per poll.
constexpr uint64_t kLibsshReadSize = 4096;

QString errnoText(int err)
{
    return QString::fromLocal8Bit(std::strerror(err));
}

QString expandHome(const QString &path)
{
    if (path == u'~')
        return QDir::homePath();
    if (path.startsWith(QLatin1String("~/")))
        return QDir::homePath() + path.mid(1);
    return path;
}

// Line numbers (1-based) of known_hosts entries for `entry` ("host" or "[host]:port"), hashed
// (|1|salt|hmac) or plain, so a refusal can say exactly which line to fix.
QList<int> knownHostsLines(const QString &file, const QString &entry)
{
    QList<int> lines;
    QFile f(file);
    if (!f.open(QIODevice::ReadOnly))
        return lines;
    const QByteArray wanted = entry.toUtf8();
    int number = 0;
    while (!f.atEnd()) {
        ++number;
        const QByteArray line = f.readLine().trimmed();
        if (line.isEmpty() || line.startsWith('#') || line.startsWith('@'))
            continue;
        const int space = line.indexOf(' ');
        const QByteArray hosts = space < 0 ? line : line.left(space);
        for (const QByteArray &pattern : hosts.split(',')) {
            bool match = false;
            if (pattern.startsWith("|1|")) {
                const QList<QByteArray> parts = pattern.mid(3).split('|');
                if (parts.size() == 2) {
                    const QByteArray salt = QByteArray::fromBase64(parts[0]);
                    const QByteArray mac
                        = QMessageAuthenticationCode::hash(wanted, salt, QCryptographicHash::Sha1);
                    match = mac == QByteArray::fromBase64(parts[1]);
                }
            } else {
                match = pattern.compare(wanted, Qt::CaseInsensitive) == 0;
            }
            if (match) {
                lines.append(number);
                break;
            }
        }
    }
    return lines;
}

void setNoDelay(int fd)
{
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

} // namespace

// ---------------------------------------------------------------------------------------------

struct SshWorker::Conn
{
    SshWorker *worker = nullptr;
    int fd = -1;
    quint16 peerPort = 0;
    ssh_channel channel = nullptr;
    struct ssh_channel_callbacks_struct callbacks
    {
    };
    bool open = false;
    bool openFailed = false;
    bool localEof = false; // the local client finished sending
    bool eofSent = false; // ... and the channel was told
    bool remoteEof = false; // the head node finished sending
    bool remoteClosed = false;
    bool localShutWr = false; // the local client was told (shutdown SHUT_WR)
    bool channelBuffered = false; // libssh holds channel data the local socket has not taken
    bool windowBlocked = false;
    bool dirty = false;
    bool dead = false;
    short registered = 0;
    short revents = 0;
    std::string toLocal; // read from the channel, not yet taken by the local socket
    std::string toRemote; // read from the local socket, not yet taken by the channel window
    std::unique_ptr<RequestHeadInjector> injector; // only with a token to add
};

// ---------------------------------------------------------------------------------------------

SshShared::SshShared() : wakeFd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) { }

SshShared::~SshShared()
{
    if (wakeFd >= 0)
        ::close(wakeFd);
}

void SshShared::wake() const
{
    const quint64 one = 1;
    [[maybe_unused]] const auto n = ::write(wakeFd, &one, sizeof one);
}

void SshShared::drain() const
{
    quint64 value = 0;
    [[maybe_unused]] const auto n = ::read(wakeFd, &value, sizeof value);
}

// ---------------------------------------------------------------------------------------------

SshWorker::SshWorker(SshTunnel *tunnel, quint64 generation, SshTunnelSettings settings,
                     std::shared_ptr<SshShared> shared)
    : m_tunnel(tunnel)
    , m_generation(generation)
    , m_settings(std::move(settings))
    , m_shared(std::move(shared))
    , m_buf(kBufferSize)
{
    if (!m_settings.injectToken.isEmpty()) {
        m_injectValue = "Bearer " + m_settings.injectToken.toUtf8();
        if (!RequestHeadInjector("Authorization", m_injectValue).isEnabled()) {
            qCWarning(lcTunnel) << "the token contains a control character: not added to requests";
            m_injectValue.fill('\0');
            m_injectValue.clear();
        }
    }
}

SshWorker::~SshWorker()
{
    closeAll();
    freeSession();
    closeListener();
    if (m_key)
        ssh_key_free(m_key);
    for (QByteArray &p : m_passphrases)
        p.fill('\0');
    m_injectValue.fill('\0');
}

void SshWorker::report(SshTunnel::State state, const QString &error)
{
    QMetaObject::invokeMethod(
        m_tunnel,
        [tunnel = m_tunnel, generation = m_generation, state, error] {
            if (generation == tunnel->m_generation)
                tunnel->onWorkerState(state, error);
        },
        Qt::QueuedConnection);
}

void SshWorker::reportError(const QString &error)
{
    QMetaObject::invokeMethod(
        m_tunnel,
        [tunnel = m_tunnel, generation = m_generation, error] {
            if (generation == tunnel->m_generation) {
                tunnel->m_error = error;
                Q_EMIT tunnel->errorOccurred(error);
            }
        },
        Qt::QueuedConnection);
}

void SshWorker::run()
{
    if (const VoidResult listening = openListener(); !listening) {
        report(SshTunnel::State::Failed, listening.error());
        return;
    }
    int backoff = 1;
    while (!stopping()) {
        report(SshTunnel::State::Connecting);
        Step step = connectSession();
        if (step.outcome == Outcome::Ok)
            step = verifyHostKey();
        if (step.outcome == Outcome::Ok) {
            report(SshTunnel::State::Authenticating);
            step = authenticate();
        }
        if (step.outcome == Outcome::Ok) {
            qCInfo(lcTunnel).noquote() << "connected to" << userAtHost();
            report(SshTunnel::State::Connected);
            backoff = 1;
            step = serve();
            closeAll();
        }
        freeSession();
        if (step.outcome == Outcome::Stopped || stopping())
            break;
        if (step.outcome == Outcome::Fatal) {
            qCDebug(lcTunnel).noquote() << step.message; // reported through errorOccurred
            closeListener();
            report(SshTunnel::State::Failed, step.message);
            return;
        }
        const QString message
            = QStringLiteral("%1; reconnecting in %2 s").arg(step.message).arg(backoff);
        qCDebug(lcTunnel).noquote() << message; // reported through errorOccurred
        report(SshTunnel::State::Reconnecting, message);
        if (!sleepInterruptible(backoff * 1000))
            break;
        backoff = std::min(backoff * 2, std::max(1, m_settings.maxBackoffSeconds));
    }
    closeListener();
    report(SshTunnel::State::Disconnected);
}

// --- local listener ----------------------------------------------------------------------------

VoidResult SshWorker::openListener()
{
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return makeError(QStringLiteral("cannot create a socket: %1").arg(errnoText(errno)));
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr {};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(m_settings.localPort);
    // Loopback only: the endpoint carries the team's token-free local side.
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(fd, reinterpret_cast<sockaddr *>(&addr), sizeof addr) < 0) {
        const int err = errno;
        ::close(fd);
        if (err == EADDRINUSE)
            return makeError(QStringLiteral("local port %1 is in use (a local Ollama?) — set "
                                            "[client] local_port or --local-port")
                                 .arg(m_settings.localPort));
        return makeError(QStringLiteral("cannot listen on 127.0.0.1:%1: %2")
                             .arg(m_settings.localPort)
                             .arg(errnoText(err)));
    }
    if (::listen(fd, SOMAXCONN) < 0) {
        const int err = errno;
        ::close(fd);
        return makeError(QStringLiteral("cannot listen on 127.0.0.1:%1: %2")
                             .arg(m_settings.localPort)
                             .arg(errnoText(err)));
    }
    socklen_t len = sizeof addr;
    ::getsockname(fd, reinterpret_cast<sockaddr *>(&addr), &len);
    m_shared->boundPort = ntohs(addr.sin_port);
    m_listenFd = fd;
    return Ok {};
}

void SshWorker::closeListener()
{
    if (m_listenFd >= 0) {
        ::close(m_listenFd);
        m_listenFd = -1;
    }
}

bool SshWorker::sleepInterruptible(int ms)
{
    const auto deadline = Clock::now() + std::chrono::milliseconds(ms);
    while (!stopping()) {
        const auto left
            = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        if (left.count() <= 0)
            return true;
        pollfd p {m_shared->wakeFd, POLLIN, 0};
        if (::poll(&p, 1, int(left.count())) > 0)
            m_shared->drain();
    }
    return false;
}

// --- connecting --------------------------------------------------------------------------------

template<typename F> int SshWorker::nonBlocking(F call, int again)
{
    const auto deadline = Clock::now() + std::chrono::seconds(m_settings.connectTimeoutSeconds);
    for (;;) {
        const int rc = call();
        if (rc != again)
            return rc;
        if (const int w = waitSession(deadline); w != 0)
            return w;
    }
}

int SshWorker::waitSession(Clock::time_point deadline)
{
    if (stopping())
        return kStopped;
    const int flags = ssh_get_poll_flags(m_session);
    if (flags & SSH_READ_PENDING)
        return 0; // libssh already holds unread input: no need to wait for the socket
    const auto left
        = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0)
        return kTimedOut;
    pollfd fds[2]
        = {{m_shared->wakeFd, POLLIN, 0},
           {ssh_get_fd(m_session), short(POLLIN | ((flags & SSH_WRITE_PENDING) ? POLLOUT : 0)), 0}};
    const int n = ::poll(fds, fds[1].fd >= 0 ? 2 : 1, int(std::min<qint64>(left.count(), 1000)));
    if (n > 0 && (fds[0].revents & POLLIN))
        m_shared->drain();
    return stopping() ? kStopped : 0;
}

QString SshWorker::sshError() const
{
    return m_session ? QString::fromUtf8(ssh_get_error(m_session)) : QString();
}

QString SshWorker::hostEntry() const
{
    char *host = nullptr;
    unsigned int port = 22;
    ssh_options_get(m_session, SSH_OPTIONS_HOST, &host);
    ssh_options_get_port(m_session, &port);
    const QString h = host ? QString::fromUtf8(host) : QString();
    ssh_string_free_char(host);
    return port == 22 ? h : QStringLiteral("[%1]:%2").arg(h).arg(port);
}

QString SshWorker::userAtHost() const
{
    char *user = nullptr;
    ssh_options_get(m_session, SSH_OPTIONS_USER, &user);
    const QString u = user ? QString::fromUtf8(user) : QString();
    ssh_string_free_char(user);
    return u.isEmpty() ? hostEntry() : u + u'@' + hostEntry();
}

SshWorker::Step SshWorker::connectSession()
{
    QString host = m_settings.host.trimmed();
    QString user;
    if (const qsizetype at = host.lastIndexOf(u'@'); at >= 0) {
        user = host.left(at);
        host = host.mid(at + 1);
    }
    if (host.isEmpty())
        return {Outcome::Fatal,
                QStringLiteral("no head node set: give user@headnode or set [client] host")};

    m_session = ssh_new();
    if (!m_session)
        return {Outcome::Fatal, QStringLiteral("libssh could not create a session")};
    ssh_set_blocking(m_session, 0);

    const QByteArray hostUtf8 = host.toUtf8();
    ssh_options_set(m_session, SSH_OPTIONS_HOST, hostUtf8.constData());
    // AES-GCM first: with AES-NI it is the fastest cipher. Set before the ssh config is read so a
    // Ciphers line there still wins.
    ssh_options_set(m_session, SSH_OPTIONS_CIPHERS_C_S,
                    "aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com,"
                    "aes128-ctr,aes256-ctr");
    ssh_options_set(m_session, SSH_OPTIONS_CIPHERS_S_C,
                    "aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com,"
                    "aes128-ctr,aes256-ctr");
    const QByteArray configFile = QFile::encodeName(expandHome(m_settings.sshConfigFile));
    // HostName, User, Port, IdentityFile, ProxyJump (-> ProxyCommand "ssh -W") for the alias.
    if (ssh_options_parse_config(m_session, configFile.isEmpty() ? nullptr : configFile.constData())
        < 0)
        return {Outcome::Fatal, QStringLiteral("cannot read the ssh config: %1").arg(sshError())};
    if (!user.isEmpty()) {
        const QByteArray u = user.toUtf8();
        ssh_options_set(m_session, SSH_OPTIONS_USER, u.constData());
    }
    if (m_settings.sshPort != 0) {
        const unsigned int port = m_settings.sshPort;
        ssh_options_set(m_session, SSH_OPTIONS_PORT, &port);
    }
    m_knownHostsFile = m_settings.knownHosts.isEmpty()
        ? QDir::homePath() + QLatin1String("/.ssh/known_hosts")
        : expandHome(m_settings.knownHosts);
    const QByteArray knownHosts = QFile::encodeName(m_knownHostsFile);
    ssh_options_set(m_session, SSH_OPTIONS_KNOWNHOSTS, knownHosts.constData());
    const int one = 1;
    ssh_options_set(m_session, SSH_OPTIONS_NODELAY, &one);
    const long timeout = m_settings.connectTimeoutSeconds;
    ssh_options_set(m_session, SSH_OPTIONS_TIMEOUT, &timeout);

    const int rc = nonBlocking([this] { return ssh_connect(m_session); }, SSH_AGAIN);
    if (rc == kStopped)
        return {Outcome::Stopped, {}};
    if (rc == kTimedOut)
        return {Outcome::Retry, QStringLiteral("timed out connecting to %1").arg(hostEntry())};
    if (rc != SSH_OK)
        return {Outcome::Retry,
                QStringLiteral("cannot connect to %1: %2").arg(hostEntry(), sshError())};

    const int fd = ssh_get_fd(m_session);
    // A dead link (laptop slept, network gone) must surface as an error: keep-alives that stay
    // unacknowledged this long abort the connection. Harmless on a ProxyCommand pipe.
    const unsigned int userTimeout
        = unsigned(std::max(10, m_settings.keepAliveSeconds * 2)) * 1000u;
    ::setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &userTimeout, sizeof userTimeout);
    ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    return {Outcome::Ok, {}};
}

SshWorker::Step SshWorker::verifyHostKey()
{
    ssh_key key = nullptr;
    if (ssh_get_server_publickey(m_session, &key) != SSH_OK)
        return {Outcome::Retry,
                QStringLiteral("no host key from %1: %2").arg(hostEntry(), sshError())};
    unsigned char *hash = nullptr;
    size_t hashLen = 0;
    QString fingerprint;
    if (ssh_get_publickey_hash(key, SSH_PUBLICKEY_HASH_SHA256, &hash, &hashLen) == SSH_OK) {
        char *text = ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, hash, hashLen);
        fingerprint = QString::fromUtf8(text);
        ssh_string_free_char(text);
        ssh_clean_pubkey_hash(&hash);
    }
    const QString keyType = QString::fromUtf8(ssh_key_type_to_char(ssh_key_type(key)));
    ssh_key_free(key);

    const QString entry = hostEntry();
    switch (ssh_session_is_known_server(m_session)) {
    case SSH_KNOWN_HOSTS_OK:
        return {Outcome::Ok, {}};
    case SSH_KNOWN_HOSTS_CHANGED:
    case SSH_KNOWN_HOSTS_OTHER: {
        const QList<int> lines = knownHostsLines(m_knownHostsFile, entry);
        QStringList where;
        for (int l : lines)
            where << QString::number(l);
        const QString location = where.isEmpty()
            ? m_knownHostsFile
            : QStringLiteral("%1 line %2").arg(m_knownHostsFile, where.join(QLatin1String(", ")));
        return {Outcome::Fatal,
                QStringLiteral(
                    "REFUSED: the host key of %1 has CHANGED (it now sends %2 %3). Someone "
                    "may be intercepting the connection (man-in-the-middle), or the head node "
                    "was reinstalled. Check with its administrator; if the new key is right, "
                    "remove the old one (%4), e.g. ssh-keygen -R '%1' -f %5")
                    .arg(entry, keyType, fingerprint, location, m_knownHostsFile)};
    }
    case SSH_KNOWN_HOSTS_NOT_FOUND:
    case SSH_KNOWN_HOSTS_UNKNOWN: {
        SshHostKeyInfo info {entry, keyType, fingerprint, m_knownHostsFile};
        bool stopped = false;
        const auto accepted = ask<bool>(
            [this, info](std::function<void(std::optional<bool>)> done) {
                QMetaObject::invokeMethod(
                    m_tunnel,
                    [tunnel = m_tunnel, info, done] {
                        tunnel->askHostKey(info, [done](bool yes) { done(yes); });
                    },
                    Qt::QueuedConnection);
            },
            &stopped);
        if (stopped)
            return {Outcome::Stopped, {}};
        if (!accepted.value_or(false))
            return {Outcome::Fatal,
                    QStringLiteral("the host key of %1 (%2 %3) is unknown and was not accepted")
                        .arg(entry, keyType, fingerprint)};
        QDir().mkpath(QFileInfo(m_knownHostsFile).absolutePath());
        if (ssh_session_update_known_hosts(m_session) != SSH_OK)
            return {Outcome::Fatal,
                    QStringLiteral("cannot add the host key to %1: %2")
                        .arg(m_knownHostsFile, sshError())};
        qCInfo(lcTunnel).noquote()
            << "added" << entry << keyType << fingerprint << "to" << m_knownHostsFile;
        return {Outcome::Ok, {}};
    }
    case SSH_KNOWN_HOSTS_ERROR:
        break;
    }
    return {Outcome::Fatal,
            QStringLiteral("cannot check the host key of %1 against %2: %3")
                .arg(entry, m_knownHostsFile, sshError())};
}

template<typename T>
std::optional<T> SshWorker::ask(std::function<void(std::function<void(std::optional<T>)>)> post,
                                bool *stopped)
{
    struct Slot
    {
        std::mutex mutex;
        bool answered = false;
        std::optional<T> value;
    };
    auto slot = std::make_shared<Slot>();
    std::weak_ptr<SshShared> shared = m_shared;
    post([slot, shared](std::optional<T> value) {
        {
            std::lock_guard lock(slot->mutex);
            if (slot->answered)
                return;
            slot->answered = true;
            slot->value = std::move(value);
        }
        if (auto s = shared.lock())
            s->wake();
    });
    for (;;) {
        {
            std::lock_guard lock(slot->mutex);
            if (slot->answered)
                return std::move(slot->value);
        }
        if (stopping()) {
            *stopped = true;
            return std::nullopt;
        }
        pollfd p {m_shared->wakeFd, POLLIN, 0};
        if (::poll(&p, 1, -1) > 0)
            m_shared->drain();
    }
}

// Passphrase for identities libssh picks itself (ssh config / defaults); runs inside
// ssh_userauth_publickey_auto on the worker thread, so it may wait for the user.
int SshWorker::authCallback(const char *, char *buf, size_t len, int, int, void *userdata)
{
    auto *self = static_cast<SshWorker *>(userdata);
    char *identity = nullptr;
    ssh_userauth_publickey_auto_get_current_identity(self->m_session, &identity);
    const QString path = identity ? QString::fromUtf8(identity) : QStringLiteral("private key");
    ssh_string_free_char(identity);
    QByteArray passphrase = self->m_passphrases.value(path);
    if (passphrase.isEmpty()) {
        bool stopped = false;
        const auto answer = self->ask<QString>(
            [self, path](std::function<void(std::optional<QString>)> done) {
                QMetaObject::invokeMethod(
                    self->m_tunnel,
                    [tunnel = self->m_tunnel, path, done] {
                        tunnel->askPassphrase(path, false, done);
                    },
                    Qt::QueuedConnection);
            },
            &stopped);
        if (stopped || !answer)
            return -1;
        passphrase = answer->toUtf8();
        self->m_passphrases.insert(path, passphrase);
    }
    if (size_t(passphrase.size()) + 1 > len)
        return -1;
    std::memcpy(buf, passphrase.constData(), size_t(passphrase.size()) + 1);
    return 0;
}

namespace {
int noPassphrase(const char *, char *, size_t, int, int, void *userdata)
{
    *static_cast<bool *>(userdata) = true;
    return -1;
}
} // namespace

// 1 = authenticated, 0 = refused / not usable (reason appended to `tried`), or a libssh/our code.
int SshWorker::tryKeyFile(const QString &path, QStringList &tried)
{
    if (!m_key || m_keyPath != path) {
        if (m_key) {
            ssh_key_free(m_key);
            m_key = nullptr;
        }
        const QByteArray file = QFile::encodeName(path);
        if (!QFileInfo(path).isReadable()) {
            tried << QStringLiteral("key %1 (cannot be read)").arg(path);
            return 0;
        }
        bool encrypted = false;
        ssh_key key = nullptr;
        int rc = ssh_pki_import_privkey_file(file.constData(), nullptr, noPassphrase, &encrypted,
                                             &key);
        for (int attempt = 0; rc != SSH_OK && encrypted && attempt < 3; ++attempt) {
            bool stopped = false;
            const auto answer = ask<QString>(
                [this, path, attempt](std::function<void(std::optional<QString>)> done) {
                    QMetaObject::invokeMethod(
                        m_tunnel,
                        [tunnel = m_tunnel, path, attempt, done] {
                            tunnel->askPassphrase(path, attempt > 0, done);
                        },
                        Qt::QueuedConnection);
                },
                &stopped);
            if (stopped)
                return kStopped;
            if (!answer) {
                tried << QStringLiteral("key %1 (no passphrase given)").arg(path);
                return 0;
            }
            QByteArray passphrase = answer->toUtf8();
            rc = ssh_pki_import_privkey_file(file.constData(), passphrase.constData(), nullptr,
                                             nullptr, &key);
            passphrase.fill('\0');
        }
        if (rc != SSH_OK) {
            tried << (encrypted
                          ? QStringLiteral("key %1 (wrong passphrase)").arg(path)
                          : QStringLiteral("key %1 (not a private key libssh can read)").arg(path));
            return 0;
        }
        m_key = key;
        m_keyPath = path;
    }
    const int rc = nonBlocking([this] { return ssh_userauth_publickey(m_session, nullptr, m_key); },
                               SSH_AUTH_AGAIN);
    if (rc == SSH_AUTH_DENIED)
        tried << QStringLiteral("key %1 (refused by the server)").arg(path);
    return rc == SSH_AUTH_SUCCESS ? 1 : rc == SSH_AUTH_DENIED ? 0 : rc;
}

SshWorker::Step SshWorker::authenticate()
{
    const auto lost = [this](int rc) -> Step {
        if (rc == kStopped)
            return {Outcome::Stopped, {}};
        if (rc == kTimedOut)
            return {Outcome::Retry,
                    QStringLiteral("%1 stopped answering during authentication").arg(hostEntry())};
        return {Outcome::Retry,
                QStringLiteral("connection to %1 failed during authentication: %2")
                    .arg(hostEntry(), sshError())};
    };

    int rc = nonBlocking([this] { return ssh_userauth_none(m_session, nullptr); }, SSH_AUTH_AGAIN);
    if (rc == SSH_AUTH_SUCCESS)
        return {Outcome::Ok, {}};
    if (rc != SSH_AUTH_DENIED && rc != SSH_AUTH_PARTIAL)
        return lost(rc);
    int methods = ssh_userauth_list(m_session, nullptr);
    QStringList tried;

    // Returns true when done (success or a terminal result in `out`).
    Step out {Outcome::Ok, {}};
    const auto finish = [&](int result, const QString &what) -> bool {
        if (result == SSH_AUTH_SUCCESS)
            return true;
        if (result == SSH_AUTH_PARTIAL) {
            methods = ssh_userauth_list(m_session, nullptr);
            tried << QStringLiteral("%1 (accepted, more needed)").arg(what);
            return false;
        }
        if (result == SSH_AUTH_DENIED)
            return false;
        out = lost(result);
        return true;
    };

    if (methods & SSH_AUTH_METHOD_PUBLICKEY) {
        if (!m_settings.identityFile.isEmpty()) {
            if (qEnvironmentVariableIsSet("SSH_AUTH_SOCK")) {
                rc = nonBlocking([this] { return ssh_userauth_agent(m_session, nullptr); },
                                 SSH_AUTH_AGAIN);
                if (rc == SSH_AUTH_DENIED)
                    tried << QStringLiteral("ssh-agent");
                if (finish(rc, QStringLiteral("ssh-agent")))
                    return out;
            }
            if (methods & SSH_AUTH_METHOD_PUBLICKEY) {
                const QString path = expandHome(m_settings.identityFile);
                rc = tryKeyFile(path, tried);
                if (rc == 1)
                    return out;
                if (rc != 0)
                    return lost(rc);
            }
        } else {
            m_sessionCallbacks = {};
            ssh_callbacks_init(&m_sessionCallbacks);
            m_sessionCallbacks.userdata = this;
            m_sessionCallbacks.auth_function = &SshWorker::authCallback;
            ssh_set_callbacks(m_session, &m_sessionCallbacks);
            rc = nonBlocking(
                [this] { return ssh_userauth_publickey_auto(m_session, nullptr, nullptr); },
                SSH_AUTH_AGAIN);
            if (rc == SSH_AUTH_DENIED)
                tried << QStringLiteral("ssh-agent and the keys from the ssh config");
            if (finish(rc, QStringLiteral("public key")))
                return out;
        }
    }

    if (methods & SSH_AUTH_METHOD_INTERACTIVE) {
        for (int attempt = 0; attempt < 3 && (methods & SSH_AUTH_METHOD_INTERACTIVE); ++attempt) {
            rc = nonBlocking([this] { return ssh_userauth_kbdint(m_session, nullptr, nullptr); },
                             SSH_AUTH_AGAIN);
            while (rc == SSH_AUTH_INFO) {
                const int n = ssh_userauth_kbdint_getnprompts(m_session);
                // Servers often end with a round of zero prompts: answer it without asking.
                if (n > 0) {
                    const QString name = QString::fromUtf8(ssh_userauth_kbdint_getname(m_session));
                    const QString instruction
                        = QString::fromUtf8(ssh_userauth_kbdint_getinstruction(m_session));
                    QList<SshKbdPrompt> prompts;
                    for (int i = 0; i < n; ++i) {
                        char echo = 0;
                        const char *text
                            = ssh_userauth_kbdint_getprompt(m_session, unsigned(i), &echo);
                        prompts.append({QString::fromUtf8(text), echo != 0});
                    }
                    bool stopped = false;
                    const auto answers = ask<QStringList>(
                        [this, name, instruction,
                         prompts](std::function<void(std::optional<QStringList>)> done) {
                            QMetaObject::invokeMethod(
                                m_tunnel,
                                [tunnel = m_tunnel, name, instruction, prompts, done] {
                                    tunnel->askKbd(name, instruction, prompts, done);
                                },
                                Qt::QueuedConnection);
                        },
                        &stopped);
                    if (stopped)
                        return {Outcome::Stopped, {}};
                    if (!answers)
                        return {Outcome::Fatal,
                                QStringLiteral("authentication to %1 cancelled").arg(userAtHost())};
                    for (int i = 0; i < n; ++i) {
                        QByteArray a = answers->value(i).toUtf8();
                        ssh_userauth_kbdint_setanswer(m_session, unsigned(i), a.constData());
                        a.fill('\0');
                    }
                }
                rc = nonBlocking(
                    [this] { return ssh_userauth_kbdint(m_session, nullptr, nullptr); },
                    SSH_AUTH_AGAIN);
            }
            if (rc == SSH_AUTH_DENIED)
                tried << QStringLiteral("keyboard-interactive (refused)");
            if (finish(rc, QStringLiteral("keyboard-interactive")))
                return out;
            if (rc == SSH_AUTH_PARTIAL)
                break;
        }
    }

    if (methods & SSH_AUTH_METHOD_PASSWORD) {
        for (int attempt = 0; attempt < 3 && (methods & SSH_AUTH_METHOD_PASSWORD); ++attempt) {
            bool stopped = false;
            const QString who = userAtHost();
            const auto password = ask<QString>(
                [this, who, attempt](std::function<void(std::optional<QString>)> done) {
                    QMetaObject::invokeMethod(
                        m_tunnel,
                        [tunnel = m_tunnel, who, attempt, done] {
                            tunnel->askPassword(who, attempt > 0, done);
                        },
                        Qt::QueuedConnection);
                },
                &stopped);
            if (stopped)
                return {Outcome::Stopped, {}};
            if (!password) {
                tried << QStringLiteral("password (not given)");
                break;
            }
            QByteArray pw = password->toUtf8();
            rc = nonBlocking(
                [this, &pw] { return ssh_userauth_password(m_session, nullptr, pw.constData()); },
                SSH_AUTH_AGAIN);
            pw.fill('\0');
            if (rc == SSH_AUTH_DENIED)
                tried << QStringLiteral("password (refused)");
            if (finish(rc, QStringLiteral("password")))
                return out;
            if (rc == SSH_AUTH_PARTIAL)
                break;
        }
    }

    QStringList offered;
    if (methods & SSH_AUTH_METHOD_PUBLICKEY)
        offered << QStringLiteral("publickey");
    if (methods & SSH_AUTH_METHOD_INTERACTIVE)
        offered << QStringLiteral("keyboard-interactive");
    if (methods & SSH_AUTH_METHOD_PASSWORD)
        offered << QStringLiteral("password");
    return {
        Outcome::Fatal,
        QStringLiteral(
            "authentication failed for %1: permission denied (the server accepts %2; tried %3). "
            "Check [client] host and identity_file, or that your public key is in "
            "~/.ssh/authorized_keys on the head node")
            .arg(userAtHost(),
                 offered.isEmpty() ? QStringLiteral("no method we support")
                                   : offered.join(QLatin1String(", ")),
                 tried.isEmpty() ? QStringLiteral("nothing") : tried.join(QLatin1String(", ")))};
}

void SshWorker::freeSession()
{
    if (!m_session)
        return;
    for (ssh_channel orphan : m_orphans)
        ssh_channel_free(orphan);
    m_orphans.clear();
    if (m_event) {
        ssh_event_remove_session(m_event, m_session);
        ssh_event_free(m_event);
        m_event = nullptr;
    }
    if (m_epollFd >= 0) {
        ::close(m_epollFd);
        m_epollFd = -1;
    }
    ssh_disconnect(m_session);
    ssh_free(m_session);
    m_session = nullptr;
}

// --- forwarding --------------------------------------------------------------------------------

int SshWorker::onWakeEvent(socket_t, int, void *userdata)
{
    static_cast<SshWorker *>(userdata)->m_woken = true;
    return 0;
}

int SshWorker::onListenEvent(socket_t, int, void *userdata)
{
    static_cast<SshWorker *>(userdata)->m_listenReady = true;
    return 0;
}

// Inside ssh_event_dopoll only record: adding or removing fds there would upset libssh's loop.
int SshWorker::onEpollEvent(socket_t, int, void *userdata)
{
    static_cast<SshWorker *>(userdata)->m_epollReady = true;
    return 0;
}

void SshWorker::collectLocalEvents()
{
    m_epollReady = false;
    // Level-triggered: what does not fit now is reported again by the next poll.
    epoll_event events[256];
    const int n = ::epoll_wait(m_epollFd, events, int(std::size(events)), 0);
    for (int i = 0; i < n; ++i) {
        auto *c = static_cast<Conn *>(events[i].data.ptr);
        const uint32_t e = events[i].events;
        const short revents
            = short(((e & EPOLLIN) ? POLLIN : 0) | ((e & EPOLLOUT) ? POLLOUT : 0)
                    | ((e & EPOLLERR) ? POLLERR : 0) | ((e & EPOLLHUP) ? POLLHUP : 0));
        if (c->revents == 0)
            m_ready.push_back(c);
        c->revents |= revents;
    }
}

void SshWorker::markDirty(Conn *c)
{
    if (!c->dirty) {
        c->dirty = true;
        m_dirty.push_back(c);
    }
}

// Straight from libssh's buffer to the local socket: no extra copy, no delay. What the socket
// does not take stays in libssh's channel buffer, which also holds back the window (back-pressure).
int SshWorker::onChannelData(ssh_session, ssh_channel, void *data, uint32_t len, int isStderr,
                             void *userdata)
{
    auto *c = static_cast<Conn *>(userdata);
    if (isStderr || c->dead || c->localShutWr)
        return int(len);
    if (c->channelBuffered || !c->toLocal.empty()) {
        c->channelBuffered = true;
        c->worker->markDirty(c);
        return 0;
    }
    ssize_t n = ::send(c->fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            c->worker->kill(c, "local write failed");
            return int(len);
        }
        n = 0;
    }
    c->worker->m_shared->bytesDown.fetch_add(quint64(n), std::memory_order_relaxed);
    if (uint32_t(n) < len) {
        c->channelBuffered = true;
        c->worker->markDirty(c);
    }
    return int(n);
}

void SshWorker::onChannelEof(ssh_session, ssh_channel, void *userdata)
{
    auto *c = static_cast<Conn *>(userdata);
    c->remoteEof = true;
    c->worker->markDirty(c);
}

void SshWorker::onChannelClose(ssh_session, ssh_channel, void *userdata)
{
    auto *c = static_cast<Conn *>(userdata);
    c->remoteEof = true;
    c->remoteClosed = true;
    c->worker->markDirty(c);
}

void SshWorker::channelOpenFailed(Conn *c)
{
    const auto now = Clock::now();
    const QString message = QStringLiteral("the head node could not connect to %1:%2: %3")
                                .arg(m_settings.remoteHost)
                                .arg(m_settings.remotePort)
                                .arg(sshError());
    qCWarning(lcTunnel).noquote() << message;
    if (now - m_lastChannelError > std::chrono::seconds(10)) {
        m_lastChannelError = now;
        reportError(message + QStringLiteral(" (is slullama-daemon running there?)"));
    }
    c->openFailed = true;
    kill(c, "channel open failed");
}

void SshWorker::kill(Conn *c, const char *why)
{
    if (c->dead)
        return;
    qCDebug(lcTunnel) << "closing local connection from port" << c->peerPort << ":" << why;
    c->dead = true;
    m_dead.push_back(c);
}

SshWorker::Step SshWorker::serve()
{
    m_event = ssh_event_new();
    if (!m_event || ssh_event_add_session(m_event, m_session) != SSH_OK)
        return {Outcome::Retry, QStringLiteral("libssh could not poll the session")};
    ssh_event_add_fd(m_event, m_shared->wakeFd, POLLIN, &SshWorker::onWakeEvent, this);
    ssh_event_add_fd(m_event, m_listenFd, POLLIN, &SshWorker::onListenEvent, this);
    if (m_epollFd < 0)
        m_epollFd = ::epoll_create1(EPOLL_CLOEXEC);
    if (m_epollFd < 0)
        return {Outcome::Retry,
                QStringLiteral("cannot watch local connections: %1").arg(errnoText(errno))};
    ssh_event_add_fd(m_event, m_epollFd, POLLIN, &SshWorker::onEpollEvent, this);

    const auto keepAlive = std::chrono::seconds(std::max(1, m_settings.keepAliveSeconds));
    auto nextKeepAlive = Clock::now() + keepAlive;
    // libssh reads the session socket kLibsshReadSize bytes per poll; its counter tells us whether
    // the last read filled that buffer, i.e. whether more is probably queued already.
    m_socketCounter = {};
    ssh_set_counters(m_session, &m_socketCounter, nullptr);
    bool socketMayHaveMore = false;
    for (;;) {
        int timeout = 0;
        if (m_ready.empty() && m_dirty.empty() && m_dead.empty() && !socketMayHaveMore) {
            timeout = int(std::max<qint64>(
                0,
                std::chrono::duration_cast<std::chrono::milliseconds>(nextKeepAlive - Clock::now())
                    .count()));
        }
        if (timeout > 0) {
            // sshd does not set TCP_NODELAY for forwarding-only sessions, so with our delayed ACKs
            // Nagle holds its next small packet up to 40 ms. Before we may wait, flush the pending
            // ACK and stay in quick-ACK mode (not sticky in the kernel, hence every time). Skipped
            // while a bulk transfer keeps the socket full: one syscall less per 4 KiB.
            ::setsockopt(ssh_get_fd(m_session), IPPROTO_TCP, TCP_QUICKACK, &kOne, sizeof kOne);
        }
        const uint64_t before = m_socketCounter.in_bytes;
        ssh_event_dopoll(m_event, timeout);
        socketMayHaveMore = m_socketCounter.in_bytes - before >= kLibsshReadSize;

        if (m_woken) {
            m_woken = false;
            m_shared->drain();
        }
        if (stopping())
            return {Outcome::Stopped, {}};
        if ((ssh_get_status(m_session) & (SSH_CLOSED | SSH_CLOSED_ERROR))
            || !ssh_is_connected(m_session))
            return {Outcome::Retry,
                    QStringLiteral("connection to %1 lost: %2").arg(hostEntry(), sshError())};

        if (m_listenReady) {
            m_listenReady = false;
            acceptConnections();
        }

        // Channel opens finish inside the poll; look at the pending ones.
        for (size_t i = 0; i < m_opening.size();) {
            Conn *c = m_opening[i];
            if (c->dead) {
                ++i;
                continue;
            }
            const QByteArray remoteHost = m_settings.remoteHost.toUtf8();
            const int rc
                = ssh_channel_open_forward(c->channel, remoteHost.constData(),
                                           m_settings.remotePort, "127.0.0.1", c->peerPort);
            if (rc == SSH_AGAIN) {
                ++i;
                continue;
            }
            m_opening.erase(m_opening.begin() + qsizetype(i));
            if (rc == SSH_OK) {
                c->open = true;
                markDirty(c);
            } else {
                channelOpenFailed(c);
            }
        }

        for (size_t i = 0; i < m_orphans.size();) {
            const QByteArray remoteHost = m_settings.remoteHost.toUtf8();
            const int rc = ssh_channel_open_forward(m_orphans[i], remoteHost.constData(),
                                                    m_settings.remotePort, "127.0.0.1", 0);
            if (rc == SSH_AGAIN) {
                ++i;
                continue;
            }
            if (rc == SSH_OK)
                ssh_channel_close(m_orphans[i]);
            ssh_channel_free(m_orphans[i]);
            m_orphans.erase(m_orphans.begin() + qsizetype(i));
        }

        // Window adjustments also arrive inside the poll.
        for (size_t i = 0; i < m_blocked.size();) {
            Conn *c = m_blocked[i];
            if (!c->dead && ssh_channel_window_size(c->channel) == 0) {
                ++i;
                continue;
            }
            m_blocked.erase(m_blocked.begin() + qsizetype(i));
            c->windowBlocked = false;
            if (!c->dead) {
                c->revents |= POLLIN;
                markDirty(c);
            }
        }

        if (m_epollReady)
            collectLocalEvents();
        std::vector<Conn *> ready;
        ready.swap(m_ready);
        for (Conn *c : ready)
            service(c);
        while (!m_dirty.empty()) {
            std::vector<Conn *> dirty;
            dirty.swap(m_dirty);
            for (Conn *c : dirty) {
                c->dirty = false;
                service(c);
            }
        }
        reap();

        if (Clock::now() >= nextKeepAlive) {
            // An ignore message makes the TCP stack notice a dead link (TCP_USER_TIMEOUT).
            ssh_send_ignore(m_session, "");
            nextKeepAlive = Clock::now() + keepAlive;
        }
    }
}

void SshWorker::acceptConnections()
{
    for (int i = 0; i < kAcceptBurst; ++i) {
        sockaddr_in peer {};
        socklen_t len = sizeof peer;
        const int fd = ::accept4(m_listenFd, reinterpret_cast<sockaddr *>(&peer), &len,
                                 SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                qCWarning(lcTunnel) << "accept failed:" << errnoText(errno);
            m_listenReady = errno == EMFILE ? false : m_listenReady;
            return;
        }
        setNoDelay(fd);
        auto *c = new Conn;
        c->worker = this;
        c->fd = fd;
        if (!m_injectValue.isEmpty())
            c->injector = std::make_unique<RequestHeadInjector>("Authorization", m_injectValue);
        c->peerPort = ntohs(peer.sin_port);
        c->channel = ssh_channel_new(m_session);
        m_conns.push_back(c);
        if (!c->channel) {
            kill(c, "no channel");
            continue;
        }
        ssh_callbacks_init(&c->callbacks);
        c->callbacks.userdata = c;
        c->callbacks.channel_data_function = &SshWorker::onChannelData;
        c->callbacks.channel_eof_function = &SshWorker::onChannelEof;
        c->callbacks.channel_close_function = &SshWorker::onChannelClose;
        ssh_set_channel_callbacks(c->channel, &c->callbacks);
        const QByteArray remoteHost = m_settings.remoteHost.toUtf8();
        const int rc = ssh_channel_open_forward(c->channel, remoteHost.constData(),
                                                m_settings.remotePort, "127.0.0.1", c->peerPort);
        if (rc == SSH_OK) {
            c->open = true;
            markDirty(c);
        } else if (rc == SSH_AGAIN) {
            m_opening.push_back(c);
        } else {
            // The refusal can arrive within this call already (libssh polls once before it
            // returns SSH_AGAIN): the same report as a refusal found later.
            channelOpenFailed(c);
        }
    }
    m_listenReady = true; // more may be waiting: come back after serving the others
}

void SshWorker::service(Conn *c)
{
    const short rev = c->revents;
    c->revents = 0;
    if (c->dead)
        return;
    if (rev & (POLLERR | POLLNVAL)) {
        kill(c, "local socket error");
        return;
    }
    if (c->open) {
        if ((rev & (POLLIN | POLLHUP)) || !c->toRemote.empty() || (c->localEof && !c->eofSent))
            pumpLocalToRemote(c);
        if (c->dead)
            return;
        if ((rev & POLLOUT) || c->channelBuffered || !c->toLocal.empty())
            pumpRemoteToLocal(c);
        if (c->dead)
            return;
    }
    if (c->remoteEof && !c->localShutWr && c->toLocal.empty() && !c->channelBuffered) {
        ::shutdown(c->fd, SHUT_WR);
        c->localShutWr = true;
    }
    if ((c->localEof && c->eofSent && c->localShutWr) || (c->remoteClosed && c->localShutWr)) {
        kill(c, "finished");
        return;
    }
    updateRegistration(c);
}

void SshWorker::pumpLocalToRemote(Conn *c)
{
    const auto writeChannel = [this, c](const char *data, size_t len) -> size_t {
        const uint32_t window = ssh_channel_window_size(c->channel);
        const uint32_t n = uint32_t(std::min<size_t>(len, window));
        if (n == 0)
            return 0;
        const int rc = ssh_channel_write(c->channel, data, n);
        if (rc < 0) {
            kill(c, "channel write failed");
            return 0;
        }
        m_shared->bytesUp.fetch_add(quint64(rc), std::memory_order_relaxed);
        return size_t(rc);
    };
    // Filtered bytes go to the channel as far as its window allows; the rest waits in toRemote
    // (a head grows by the added header, so it may not fit the window the read was sized for).
    // Body bytes are written straight from the read buffer.
    const auto forwardFiltered = [this, c, &writeChannel](QByteArrayView in) -> bool {
        while (!in.isEmpty()) {
            const RequestHeadInjector::Piece piece = c->injector->next(in);
            in = in.sliced(piece.consumed);
            size_t written = 0;
            if (c->toRemote.empty() && !piece.bytes.isEmpty()) {
                written = writeChannel(piece.bytes.data(), size_t(piece.bytes.size()));
                if (c->dead)
                    return false;
            }
            c->toRemote.append(piece.bytes.data() + written, size_t(piece.bytes.size()) - written);
        }
        if (c->toRemote.empty())
            return true;
        if (!c->windowBlocked) {
            c->windowBlocked = true;
            m_blocked.push_back(c);
        }
        return false;
    };
    if (!c->toRemote.empty()) {
        const size_t n = writeChannel(c->toRemote.data(), c->toRemote.size());
        c->toRemote.erase(0, n);
        if (c->dead)
            return;
        if (!c->toRemote.empty()) {
            if (!c->windowBlocked) {
                c->windowBlocked = true;
                m_blocked.push_back(c);
            }
            return;
        }
    }
    for (int i = 0; i < kReadBurst && !c->localEof; ++i) {
        const uint32_t window = ssh_channel_window_size(c->channel);
        if (window == 0) {
            if (!c->windowBlocked) {
                c->windowBlocked = true;
                m_blocked.push_back(c);
            }
            return;
        }
        const ssize_t n = ::recv(c->fd, m_buf.data(), std::min<size_t>(m_buf.size(), window), 0);
        if (n > 0 && c->injector) {
            if (!forwardFiltered(QByteArrayView(m_buf.data(), n)))
                return;
            if (size_t(n) < std::min<size_t>(m_buf.size(), window))
                break;
        } else if (n > 0) {
            const size_t written = writeChannel(m_buf.data(), size_t(n));
            if (c->dead)
                return;
            if (written < size_t(n)) {
                c->toRemote.assign(m_buf.data() + written, size_t(n) - written);
                if (!c->windowBlocked) {
                    c->windowBlocked = true;
                    m_blocked.push_back(c);
                }
                return;
            }
            if (size_t(n) < std::min<size_t>(m_buf.size(), window))
                break; // drained the socket for now
        } else if (n == 0) {
            c->localEof = true;
            // An unfinished head the injector held back still belongs to the peer.
            if (c->injector && !forwardFiltered(c->injector->finish()))
                return;
        } else {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                break;
            kill(c, "local read failed");
            return;
        }
    }
    if (c->localEof && !c->eofSent && c->toRemote.empty()) {
        ssh_channel_send_eof(c->channel);
        c->eofSent = true;
    }
}

void SshWorker::pumpRemoteToLocal(Conn *c)
{
    const auto sendLocal = [this, c](const char *data, size_t len) -> size_t {
        const ssize_t n = ::send(c->fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                kill(c, "local write failed");
            return 0;
        }
        m_shared->bytesDown.fetch_add(quint64(n), std::memory_order_relaxed);
        return size_t(n);
    };
    if (!c->toLocal.empty()) {
        c->toLocal.erase(0, sendLocal(c->toLocal.data(), c->toLocal.size()));
        if (c->dead || !c->toLocal.empty())
            return;
    }
    while (c->channelBuffered && !c->dead) {
        const int n
            = ssh_channel_read_nonblocking(c->channel, m_buf.data(), uint32_t(m_buf.size()), 0);
        if (n == SSH_ERROR) {
            // A closed channel reports an error once its buffer is empty.
            c->channelBuffered = false;
            if (!c->remoteClosed && !c->remoteEof)
                kill(c, "channel read failed");
            return;
        }
        if (n <= 0) {
            c->channelBuffered = false;
            return;
        }
        const size_t sent = sendLocal(m_buf.data(), size_t(n));
        if (sent < size_t(n)) {
            if (!c->dead)
                c->toLocal.assign(m_buf.data() + sent, size_t(n) - sent);
            return;
        }
    }
}

void SshWorker::updateRegistration(Conn *c)
{
    short want = 0;
    if (c->open && !c->localEof && !c->windowBlocked && c->toRemote.empty())
        want |= POLLIN;
    if (!c->toLocal.empty() || c->channelBuffered)
        want |= POLLOUT;
    if (want == c->registered)
        return;
    epoll_event ev {};
    ev.events = ((want & POLLIN) ? EPOLLIN : 0u) | ((want & POLLOUT) ? EPOLLOUT : 0u);
    ev.data.ptr = c;
    const int op = !want ? EPOLL_CTL_DEL : c->registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (::epoll_ctl(m_epollFd, op, c->fd, &ev) < 0 && want) {
        kill(c, "cannot watch the local connection");
        return;
    }
    c->registered = want;
}

void SshWorker::reap()
{
    while (!m_dead.empty()) {
        std::vector<Conn *> dead;
        dead.swap(m_dead);
        for (Conn *c : dead) {
            if (c->registered && m_epollFd >= 0)
                ::epoll_ctl(m_epollFd, EPOLL_CTL_DEL, c->fd, nullptr);
            c->registered = 0;
            if (c->channel) {
                ssh_remove_channel_callbacks(c->channel, &c->callbacks);
                const bool connected = m_session && ssh_is_connected(m_session);
                if (!c->open && !c->openFailed && connected) {
                    // Still opening: it must be closed once the server confirms it, or sshd
                    // keeps the far end open. A refused one must not be closed at all.
                    m_orphans.push_back(c->channel);
                } else {
                    if (c->open && connected)
                        ssh_channel_close(c->channel);
                    ssh_channel_free(c->channel);
                }
                c->channel = nullptr;
            }
            ::close(c->fd);
            std::erase(m_conns, c);
            std::erase(m_opening, c);
            std::erase(m_blocked, c);
            std::erase(m_ready, c);
            std::erase(m_dirty, c);
        }
        for (Conn *c : dead)
            delete c;
    }
    m_shared->channels.store(int(m_conns.size()), std::memory_order_relaxed);
}

void SshWorker::closeAll()
{
    for (Conn *c : m_conns)
        kill(c, "tunnel closing");
    reap();
    m_ready.clear();
    m_dirty.clear();
}

} // namespace slullama
