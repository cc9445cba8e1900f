// `slullama connect`: the laptop tunnel in the foreground, questions asked on the terminal.

#include "apiclient.h"
#include "cliopts.h"
#include "commands.h"
#include "logging.h"
#include "sshtunnel.h"

#include <QCoreApplication>
#include <QJsonDocument>
#include <QSocketNotifier>
#include <QTextStream>
#include <QTimer>

#include <csignal>
#include <deque>
#include <functional>

#include <fcntl.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

namespace slullama {

namespace {

int g_signalFd = -1;

void onSignal(int)
{
    const char byte = 1;
    [[maybe_unused]] const auto n = ::write(g_signalFd, &byte, 1);
}

// SIGINT/SIGTERM become an event-loop callback (a byte on a socket pair), so Ctrl+C can close the
// tunnel and restore the terminal instead of killing the process mid-prompt. Restores the
// default handlers when it goes.
class SignalCatcher final
{
public:
    explicit SignalCatcher(std::function<void()> onSignalled)
    {
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, m_fds) != 0)
            return;
        g_signalFd = m_fds[1];
        struct sigaction action
        {
        };
        action.sa_handler = onSignal;
        sigemptyset(&action.sa_mask);
        action.sa_flags = SA_RESTART;
        ::sigaction(SIGINT, &action, nullptr);
        ::sigaction(SIGTERM, &action, nullptr);
        m_notifier = std::make_unique<QSocketNotifier>(m_fds[0], QSocketNotifier::Read);
        QObject::connect(m_notifier.get(), &QSocketNotifier::activated,
                         QCoreApplication::instance(), [this, onSignalled] {
                             char byte;
                             [[maybe_unused]] const auto n = ::read(m_fds[0], &byte, 1);
                             onSignalled();
                         });
    }
    ~SignalCatcher()
    {
        if (!m_notifier)
            return;
        m_notifier.reset();
        ::signal(SIGINT, SIG_DFL);
        ::signal(SIGTERM, SIG_DFL);
        g_signalFd = -1;
        ::close(m_fds[0]);
        ::close(m_fds[1]);
    }
    SignalCatcher(const SignalCatcher &) = delete;
    SignalCatcher &operator=(const SignalCatcher &) = delete;

    bool isValid() const { return m_notifier != nullptr; }

private:
    int m_fds[2] = {-1, -1};
    std::unique_ptr<QSocketNotifier> m_notifier;
};

QUrl loopbackUrl(quint16 port)
{
    QUrl url;
    url.setScheme(QStringLiteral("http"));
    url.setHost(QStringLiteral("127.0.0.1"));
    url.setPort(port);
    return url;
}

// Asks on /dev/tty (so it works with stdout redirected), one question at a time, reading without
// blocking the event loop. Secrets are read with echo off. Without a terminal every question is
// answered "no" with a message saying why.
class TerminalPrompter final : public QObject, public SshPrompter
{
public:
    TerminalPrompter()
    {
        m_fd = ::open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (m_fd >= 0) {
            m_notifier = new QSocketNotifier(m_fd, QSocketNotifier::Read, this);
            m_notifier->setEnabled(false);
            connect(m_notifier, &QSocketNotifier::activated, this, &TerminalPrompter::readInput);
        }
    }
    ~TerminalPrompter() override
    {
        restoreEcho();
        if (m_fd >= 0)
            ::close(m_fd);
    }

    void restoreEcho()
    {
        if (m_echoOff) {
            ::tcsetattr(m_fd, TCSAFLUSH, &m_saved);
            m_echoOff = false;
            write(QStringLiteral("\n"));
        }
    }

    void acceptHostKey(const SshHostKeyInfo &key, BoolReply reply) override
    {
        if (!hasTerminal(
                QStringLiteral("accept the host key of %1 (%2)").arg(key.host, key.fingerprint))) {
            QTextStream(stderr) << "slullama: to trust it, run slullama connect in a terminal, or "
                                   "connect once with OpenSSH's ssh and check the fingerprint\n";
            reply(false);
            return;
        }
        const QString text
            = QStringLiteral("The authenticity of host '%1' can't be established.\n"
                             "%2 key fingerprint is %3.\n"
                             "Compare it with the fingerprint your administrator published.\n"
                             "Trust it and add it to %4? (yes/no): ")
                  .arg(key.host, key.keyType, key.fingerprint, key.knownHostsFile);
        enqueue(text, true, [this, text, reply](const QString &answer) {
            const QString a = answer.trimmed().toLower();
            if (a == QLatin1String("yes") || a == QLatin1String("y")) {
                reply(true);
                return true;
            }
            if (a == QLatin1String("no") || a == QLatin1String("n")) {
                reply(false);
                return true;
            }
            write(QStringLiteral("Please type 'yes' or 'no': "));
            return false;
        });
    }

    void askPassphrase(const QString &keyFile, bool retry, TextReply reply) override
    {
        if (!hasTerminal(QStringLiteral("ask for the passphrase of %1").arg(keyFile))) {
            reply(std::nullopt);
            return;
        }
        const QString text = (retry ? QStringLiteral("Wrong passphrase. ") : QString())
            + QStringLiteral("Enter passphrase for key '%1': ").arg(keyFile);
        enqueue(text, false, [reply](const QString &answer) {
            reply(answer);
            return true;
        });
    }

    void askKbdInteractive(const QString &name, const QString &instruction,
                           const QList<SshKbdPrompt> &prompts, TextsReply reply) override
    {
        if (!hasTerminal(QStringLiteral("answer the server's questions (keyboard-interactive)"))) {
            reply(std::nullopt);
            return;
        }
        auto answers = std::make_shared<QStringList>();
        for (int i = 0; i < prompts.size(); ++i) {
            QString text;
            if (i == 0) {
                if (!name.isEmpty())
                    text += name + u'\n';
                if (!instruction.isEmpty())
                    text += instruction + u'\n';
            }
            text += prompts[i].text; // exactly as the server words it
            const bool last = i == prompts.size() - 1;
            enqueue(text, prompts[i].echo, [answers, last, reply](const QString &answer) {
                answers->append(answer);
                if (last)
                    reply(*answers);
                return true;
            });
        }
    }

    void askPassword(const QString &userAtHost, bool retry, TextReply reply) override
    {
        if (!hasTerminal(QStringLiteral("ask for the password of %1").arg(userAtHost))) {
            reply(std::nullopt);
            return;
        }
        const QString text
            = (retry ? QStringLiteral("Permission denied, please try again.\n") : QString())
            + QStringLiteral("%1's password: ").arg(userAtHost);
        enqueue(text, false, [reply](const QString &answer) {
            reply(answer);
            return true;
        });
    }

private:
    // Returns true when the answer was taken, false to keep reading (e.g. "yes/no" again).
    using Handler = std::function<bool(const QString &)>;
    struct Question
    {
        QString text;
        bool echo;
        Handler handler;
    };

    bool hasTerminal(const QString &what)
    {
        if (m_fd >= 0)
            return true;
        QTextStream(stderr) << "slullama: cannot " << what << ": no terminal\n";
        return false;
    }

    void write(const QString &text)
    {
        const QByteArray bytes = text.toLocal8Bit();
        [[maybe_unused]] const auto n = ::write(m_fd, bytes.constData(), size_t(bytes.size()));
    }

    void enqueue(const QString &text, bool echo, Handler handler)
    {
        m_queue.push_back({text, echo, std::move(handler)});
        if (m_queue.size() == 1)
            showCurrent();
    }

    void showCurrent()
    {
        if (m_queue.empty()) {
            m_notifier->setEnabled(false);
            return;
        }
        const Question &q = m_queue.front();
        if (!q.echo && ::tcgetattr(m_fd, &m_saved) == 0) {
            termios quiet = m_saved;
            quiet.c_lflag &= tcflag_t(~ECHO);
            quiet.c_lflag |= ECHONL;
            if (::tcsetattr(m_fd, TCSAFLUSH, &quiet) == 0)
                m_echoOff = true;
        }
        write(q.text);
        m_line.clear();
        m_notifier->setEnabled(true);
    }

    void readInput()
    {
        char buf[512];
        const ssize_t n = ::read(m_fd, buf, sizeof buf);
        if (n <= 0) {
            // The terminal went away (EOF): answer what is pending with empty input.
            m_line.append('\n');
        } else {
            m_line.append(buf, n);
        }
        const qsizetype newline = m_line.indexOf('\n');
        if (newline < 0)
            return;
        QByteArray raw = m_line.left(newline);
        m_line.fill('\0');
        m_line.clear();
        if (m_echoOff) {
            ::tcsetattr(m_fd, TCSAFLUSH, &m_saved);
            m_echoOff = false;
        }
        const QString answer = QString::fromLocal8Bit(raw);
        raw.fill('\0');
        if (m_queue.empty())
            return;
        if (m_queue.front().handler(answer)) {
            m_queue.pop_front();
            showCurrent();
        } else if (!m_queue.front().echo) {
            showCurrent();
        }
    }

    int m_fd = -1;
    QSocketNotifier *m_notifier = nullptr;
    std::deque<Question> m_queue;
    QByteArray m_line;
    termios m_saved {};
    bool m_echoOff = false;
};

} // namespace

void sendApiRequest(ApiClient &client, bool wake, const std::function<void(int)> &done,
                    const QString &context, double keepAwakeMinutes)
{
    const QString command = wake ? QStringLiteral("wake") : QStringLiteral("status");
    const auto succeed = [done](const Status &, const QByteArray &json) {
        QTextStream(stdout) << QJsonDocument::fromJson(json).toJson(QJsonDocument::Indented);
        done(0);
    };
    const auto fail = [done, command, context](const QString &message, int) {
        QTextStream(stderr) << "slullama " << command << ": " << message << context << "\n";
        done(1);
    };
    QObject::connect(&client, &ApiClient::statusReceived, &client, succeed,
                     Qt::SingleShotConnection);
    QObject::connect(&client, &ApiClient::wakeAccepted, &client, succeed, Qt::SingleShotConnection);
    QObject::connect(&client, &ApiClient::statusFailed, &client, fail, Qt::SingleShotConnection);
    QObject::connect(&client, &ApiClient::wakeFailed, &client, fail, Qt::SingleShotConnection);
    if (wake)
        client.wake(keepAwakeMinutes);
    else
        client.fetchStatus();
}

int runConnect(const Config &config)
{
    QTextStream err(stderr);
    if (config.client.host.trimmed().isEmpty()) {
        err << "slullama connect: no head node: give user@headnode or set host in the [client] "
               "section of the config\n";
        return 2;
    }
    auto *app = QCoreApplication::instance();

    TerminalPrompter prompter;
    SshTunnel tunnel;
    tunnel.setPrompter(&prompter);
    int exitCode = 0;
    bool everConnected = false;

    SignalCatcher catcher([&] {
        prompter.restoreEcho();
        tunnel.stop();
        QTextStream(stderr) << "Tunnel closed.\n";
        app->exit(exitCode);
    });
    if (!catcher.isValid()) {
        err << "slullama connect: cannot set up signal handling\n";
        return 1;
    }

    // Once the tunnel is up, one status request through it says whether the daemon is there and
    // takes the token — feedback now rather than a 401 in some tool later. It never wakes the node.
    const QString token = config.client.token;
    ApiClient checker(QUrl(), token);
    QObject::connect(&checker, &ApiClient::statusReceived, app,
                     [&](const Status &status, const QByteArray &) {
                         QTextStream(stdout) << (token.isEmpty() ? "The daemon needs no token"
                                                                 : "Token accepted by the daemon")
                                             << " (phase: " << phaseName(status.phase) << ").\n";
                     });
    QObject::connect(&checker, &ApiClient::statusFailed, app,
                     [&](const QString &message, int httpStatus) {
                         QTextStream e(stderr);
                         if (httpStatus == 401 || httpStatus == 403) {
                             e << "slullama connect: "
                               << (token.isEmpty() ? QStringLiteral("the daemon requires a token")
                                                   : QStringLiteral("token rejected by the daemon"))
                               << " (HTTP " << httpStatus
                               << "): set [client] token, SLULLAMA_TOKEN or --token. The tunnel "
                                  "stays open; requests need 'Authorization: Bearer <token>'.\n";
                         } else {
                             e << "slullama connect: warning: the tunnel is open but the daemon "
                                  "did not answer: "
                               << message << "\n";
                         }
                     });

    QObject::connect(&tunnel, &SshTunnel::stateChanged, app, [&](SshTunnel::State state) {
        QTextStream out(stdout);
        QTextStream e(stderr);
        switch (state) {
        case SshTunnel::State::Connecting:
            qCInfo(lcTunnel).noquote() << "connecting to" << tunnel.settings().host;
            break;
        case SshTunnel::State::Authenticating:
            qCInfo(lcTunnel) << "authenticating";
            break;
        case SshTunnel::State::Connected:
            if (!everConnected) {
                out << "Tunnel open: localhost:" << tunnel.localPort() << " → "
                    << tunnel.remoteDescription() << "\n"
                    << "Press Ctrl+C to close.\n";
                out.flush();
                checker.setEndpoint(loopbackUrl(tunnel.localPort()), token);
                checker.fetchStatus();
            } else {
                e << "slullama: reconnected, tunnel open again\n";
            }
            everConnected = true;
            break;
        case SshTunnel::State::Reconnecting:
            e << "slullama: " << tunnel.errorString() << "\n";
            break;
        case SshTunnel::State::Failed:
            e << "slullama connect: " << tunnel.errorString() << "\n";
            exitCode = 1;
            app->exit(1);
            break;
        case SshTunnel::State::Disconnected:
            break;
        }
    });
    QObject::connect(&tunnel, &SshTunnel::errorOccurred, app, [&](const QString &message) {
        // Failures and reconnects are printed with the state; here only errors of one request.
        if (tunnel.state() == SshTunnel::State::Connected)
            QTextStream(stderr) << "slullama: " << message << "\n";
    });

    tunnel.start(SshTunnelSettings::fromConfig(config.client));
    return app->exec();
}

int runRemoteApiCommand(const Config &config, const QString &host, bool wake,
                        double keepAwakeMinutes)
{
    const QString command = wake ? QStringLiteral("wake") : QStringLiteral("status");
    auto *app = QCoreApplication::instance();

    TerminalPrompter prompter;
    SshTunnel tunnel;
    tunnel.setPrompter(&prompter);
    bool finished = false;
    const auto finish = [&](int exitCode) {
        if (finished)
            return;
        finished = true;
        tunnel.stop();
        app->exit(exitCode);
    };

    SignalCatcher catcher([&] {
        prompter.restoreEcho();
        finish(130);
    });

    SshTunnelSettings settings = SshTunnelSettings::fromConfig(config.client);
    settings.host = host;
    // Any free port: the configured one is likely held by a running `slullama connect` or tray.
    settings.localPort = 0;
    const QString token = cli::apiEndpoint(config, host).token;
    ApiClient client(QUrl(), token);
    QString channelError; // why the head node could not reach the daemon, if it said
    bool sent = false;
    int failedExitCode = 0; // set while a failed request waits for the head node's reason
    const auto printChannelError = [&] {
        QTextStream(stderr) << "slullama " << command << ": " << channelError << "\n";
    };
    // The ApiClient's own failure wording names the local end; the head node's refusal (e.g. no
    // daemon on that port) comes from the tunnel's thread and may arrive just after the closed
    // connection, so a failed request waits briefly for it before exiting.
    const auto requestDone = [&](int exitCode) {
        if (exitCode == 0) {
            finish(0);
        } else if (!channelError.isEmpty()) {
            printChannelError();
            finish(exitCode);
        } else {
            failedExitCode = exitCode;
            QTimer::singleShot(1000, app, [&, exitCode] { finish(exitCode); });
        }
    };

    QObject::connect(&tunnel, &SshTunnel::errorOccurred, app, [&](const QString &message) {
        if (tunnel.state() != SshTunnel::State::Connected || !channelError.isEmpty())
            return;
        channelError = message;
        if (failedExitCode != 0) {
            printChannelError();
            finish(failedExitCode);
        }
    });
    QObject::connect(&tunnel, &SshTunnel::stateChanged, app, [&](SshTunnel::State state) {
        if (finished)
            return;
        switch (state) {
        case SshTunnel::State::Connected:
            if (sent)
                break;
            sent = true;
            qCDebug(lcTunnel).noquote() << QStringLiteral("tunnel open: 127.0.0.1:%1 -> %2")
                                               .arg(tunnel.localPort())
                                               .arg(tunnel.remoteDescription());
            client.setEndpoint(loopbackUrl(tunnel.localPort()), token);
            sendApiRequest(
                client, wake, requestDone,
                QStringLiteral(" (through the SSH tunnel to ") + tunnel.remoteDescription() + u')',
                keepAwakeMinutes);
            break;
        case SshTunnel::State::Reconnecting:
        case SshTunnel::State::Failed: {
            // One request, no retries: a lost or refused connection is the answer.
            QString message = tunnel.errorString();
            if (state == SshTunnel::State::Reconnecting)
                message = message.section(QStringLiteral("; reconnecting"), 0, 0);
            QTextStream(stderr) << "slullama " << command << ": " << message << "\n";
            finish(1);
            break;
        }
        case SshTunnel::State::Connecting:
        case SshTunnel::State::Authenticating:
        case SshTunnel::State::Disconnected:
            break;
        }
    });
    tunnel.start(settings);
    return app->exec();
}

} // namespace slullama
