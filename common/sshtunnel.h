#pragma once

#include "config.h"
#include "sshprompter.h"

#include <QObject>
#include <QString>
#include <QTimer>

#include <memory>
#include <thread>
#include <vector>

namespace slullama {

class SshWorker;
struct SshShared;

// How to reach the head node. Built from [client] with fromConfig(); tests set the extra knobs.
struct SshTunnelSettings
{
    QString host;                 // "[user@]host"; host may be a ~/.ssh/config alias
    quint16 sshPort = 0;          // 0 = from ssh config, else 22
    QString identityFile;         // empty = ssh-agent + IdentityFile from ssh config + default keys
    QString knownHosts;           // empty = ~/.ssh/known_hosts
    QString sshConfigFile;        // empty = ~/.ssh/config (+ /etc/ssh/ssh_config)
    QString remoteHost = QStringLiteral("127.0.0.1"); // seen from the head node
    quint16 remotePort = 11435;
    quint16 localPort = 11434;    // 0 = any free port (see SshTunnel::localPort())
    int keepAliveSeconds = 30;
    int connectTimeoutSeconds = 20;
    int maxBackoffSeconds = 30;
    // Added as "Authorization: Bearer <token>" to every request head that has no Authorization
    // header (see RequestHeadInjector); empty = bytes pass unchanged. Never logged.
    QString injectToken;

    static SshTunnelSettings fromConfig(const ClientConfig &client);
};

// The laptop -> head node tunnel: listens on 127.0.0.1:localPort (never another interface) and
// carries every accepted connection over its own direct-tcpip channel to remoteHost:remotePort on
// the head node. libssh runs on a private worker thread; this object lives on the caller's thread
// and only relays state. It reconnects with backoff (1, 2, 4 .. 30 s) after a lost connection;
// local connections arriving meanwhile wait in the listen backlog.
//
// Failed is final (host key refused/changed, authentication failed, local port busy, bad
// settings): call start() again after fixing the cause.
class SshTunnel final : public QObject
{
    Q_OBJECT
    Q_PROPERTY(State state READ state NOTIFY stateChanged)
    Q_PROPERTY(QString errorString READ errorString NOTIFY errorOccurred)
    Q_PROPERTY(int openChannels READ openChannels NOTIFY statsChanged)

public:
    enum class State { Disconnected, Connecting, Authenticating, Connected, Reconnecting, Failed };
    Q_ENUM(State)

    explicit SshTunnel(QObject *parent = nullptr);
    ~SshTunnel() override; // stops and joins the worker (quick: it never blocks on the network)

    // Not owned; must outlive the tunnel or be reset. Without a prompter every question is
    // answered "no" (unknown host key refused, no passphrase/password/codes).
    void setPrompter(SshPrompter *prompter);

    void start(const SshTunnelSettings &settings); // restarts if running
    void stop();                                   // closes everything; state -> Disconnected

    State state() const { return m_state; }
    bool isActive() const; // worker running (any state but Disconnected/Failed)
    QString errorString() const { return m_error; } // last error, kept after recovery
    const SshTunnelSettings &settings() const { return m_settings; }
    quint16 localPort() const;  // the bound port (useful with localPort 0); 0 before bound
    QString remoteDescription() const; // "headnode:11435" for messages
    int openChannels() const;
    quint64 bytesToRemote() const;
    quint64 bytesFromRemote() const;

    static QString stateName(State state);

Q_SIGNALS:
    void stateChanged(slullama::SshTunnel::State state);
    // Every error worth showing: fatal ones (state Failed) and transient ones (followed by
    // Reconnecting). The message says what failed and, where it can, what to do.
    void errorOccurred(const QString &message);
    // Channels/bytes changed; emitted at most about once a second while traffic flows.
    void statsChanged();

private:
    friend class SshWorker;
    void onWorkerState(State state, const QString &error);
    void onWorkerFinished(quint64 generation);
    void askHostKey(const SshHostKeyInfo &info, SshPrompter::BoolReply reply);
    void askPassphrase(const QString &file, bool retry, SshPrompter::TextReply reply);
    void askKbd(const QString &name, const QString &instruction, const QList<SshKbdPrompt> &prompts,
                SshPrompter::TextsReply reply);
    void askPassword(const QString &who, bool retry, SshPrompter::TextReply reply);
    void joinWorker();
    void pollStats();

    SshTunnelSettings m_settings;
    State m_state = State::Disconnected;
    QString m_error;
    SshPrompter *m_prompter = nullptr;
    std::shared_ptr<SshShared> m_shared; // of the current worker
    struct WorkerThread
    {
        quint64 generation;
        std::thread thread;
    };
    std::vector<WorkerThread> m_threads; // current and stopping workers, joined when they end
    quint64 m_generation = 0;
    QTimer m_statsTimer;
    int m_lastChannels = 0;
    quint64 m_lastUp = 0;
    quint64 m_lastDown = 0;
};

} // namespace slullama
