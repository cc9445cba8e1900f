#include "sshtunnel.h"

#include "logging.h"
#include "sshworker.h"

#include <csignal>

namespace slullama {

SshTunnelSettings SshTunnelSettings::fromConfig(const ClientConfig &client)
{
    SshTunnelSettings s;
    s.host = client.host;
    s.sshPort = client.sshPort;
    s.identityFile = client.identityFile;
    s.knownHosts = client.knownHosts;
    s.remotePort = client.serverPort;
    s.localPort = client.localPort;
    if (client.injectToken)
        s.injectToken = client.token;
    return s;
}

SshTunnel::SshTunnel(QObject *parent) : QObject(parent)
{
    m_statsTimer.setInterval(500);
    connect(&m_statsTimer, &QTimer::timeout, this, &SshTunnel::pollStats);
}

SshTunnel::~SshTunnel()
{
    if (m_shared) {
        m_shared->stop = true;
        m_shared->wake();
    }
    joinWorker();
}

void SshTunnel::setPrompter(SshPrompter *prompter)
{
    m_prompter = prompter;
}

void SshTunnel::start(const SshTunnelSettings &settings)
{
    stop();
    // Writes to a vanished peer (local client or ProxyCommand) must be errors, not process death.
    struct sigaction current
    {
    };
    if (::sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL)
        std::signal(SIGPIPE, SIG_IGN);
    m_settings = settings;
    m_error.clear();
    const quint64 generation = ++m_generation;
    m_shared = std::make_shared<SshShared>();
    auto worker = std::make_unique<SshWorker>(this, generation, settings, m_shared);
    m_threads.push_back(
        {generation, std::thread([this, generation, w = std::move(worker)]() mutable {
             w->run();
             w.reset();
             QMetaObject::invokeMethod(
                 this, [this, generation] { onWorkerFinished(generation); }, Qt::QueuedConnection);
         })});
    m_statsTimer.start();
    qCDebug(lcTunnel).noquote() << QStringLiteral("starting tunnel 127.0.0.1:%1 -> %2")
                                       .arg(settings.localPort)
                                       .arg(remoteDescription());
}

void SshTunnel::stop()
{
    if (!m_shared)
        return;
    m_shared->stop = true;
    m_shared->wake();
    m_shared.reset();
    ++m_generation; // late reports of the stopping worker are ignored
    m_statsTimer.stop();
    pollStats();
    if (m_state != State::Disconnected) {
        m_state = State::Disconnected;
        Q_EMIT stateChanged(m_state);
    }
}

bool SshTunnel::isActive() const
{
    return m_shared && m_state != State::Failed && m_state != State::Disconnected;
}

quint16 SshTunnel::localPort() const
{
    return m_shared ? quint16(m_shared->boundPort.load()) : 0;
}

QString SshTunnel::remoteDescription() const
{
    QString host = m_settings.host;
    if (const qsizetype at = host.lastIndexOf(u'@'); at >= 0)
        host = host.mid(at + 1);
    return host + u':' + QString::number(m_settings.remotePort);
}

int SshTunnel::openChannels() const
{
    return m_shared ? m_shared->channels.load(std::memory_order_relaxed) : 0;
}

quint64 SshTunnel::bytesToRemote() const
{
    return m_shared ? m_shared->bytesUp.load(std::memory_order_relaxed) : m_lastUp;
}

quint64 SshTunnel::bytesFromRemote() const
{
    return m_shared ? m_shared->bytesDown.load(std::memory_order_relaxed) : m_lastDown;
}

QString SshTunnel::stateName(State state)
{
    switch (state) {
    case State::Disconnected:
        return QStringLiteral("disconnected");
    case State::Connecting:
        return QStringLiteral("connecting");
    case State::Authenticating:
        return QStringLiteral("authenticating");
    case State::Connected:
        return QStringLiteral("connected");
    case State::Reconnecting:
        return QStringLiteral("reconnecting");
    case State::Failed:
        return QStringLiteral("failed");
    }
    return {};
}

void SshTunnel::onWorkerState(State state, const QString &error)
{
    if (!error.isEmpty()) {
        m_error = error;
        Q_EMIT errorOccurred(error);
    }
    if (state == State::Failed || state == State::Disconnected) {
        m_statsTimer.stop();
        pollStats();
    }
    if (state != m_state) {
        m_state = state;
        Q_EMIT stateChanged(state);
    }
}

void SshTunnel::onWorkerFinished(quint64 generation)
{
    for (auto it = m_threads.begin(); it != m_threads.end(); ++it) {
        if (it->generation == generation) {
            if (it->thread.joinable())
                it->thread.join(); // it has returned from run(): this does not wait
            m_threads.erase(it);
            break;
        }
    }
}

void SshTunnel::joinWorker()
{
    for (WorkerThread &t : m_threads) {
        if (t.thread.joinable())
            t.thread.join();
    }
    m_threads.clear();
}

void SshTunnel::pollStats()
{
    const int channels = openChannels();
    const quint64 up = bytesToRemote();
    const quint64 down = bytesFromRemote();
    if (channels == m_lastChannels && up == m_lastUp && down == m_lastDown)
        return;
    m_lastChannels = channels;
    m_lastUp = up;
    m_lastDown = down;
    Q_EMIT statsChanged();
}

void SshTunnel::askHostKey(const SshHostKeyInfo &info, SshPrompter::BoolReply reply)
{
    if (!m_prompter) {
        reply(false);
        return;
    }
    m_prompter->acceptHostKey(info, std::move(reply));
}

void SshTunnel::askPassphrase(const QString &file, bool retry, SshPrompter::TextReply reply)
{
    if (!m_prompter) {
        reply(std::nullopt);
        return;
    }
    m_prompter->askPassphrase(file, retry, std::move(reply));
}

void SshTunnel::askKbd(const QString &name, const QString &instruction,
                       const QList<SshKbdPrompt> &prompts, SshPrompter::TextsReply reply)
{
    if (!m_prompter) {
        reply(std::nullopt);
        return;
    }
    m_prompter->askKbdInteractive(name, instruction, prompts, std::move(reply));
}

void SshTunnel::askPassword(const QString &who, bool retry, SshPrompter::TextReply reply)
{
    if (!m_prompter) {
        reply(std::nullopt);
        return;
    }
    m_prompter->askPassword(who, retry, std::move(reply));
}

} // namespace slullama
