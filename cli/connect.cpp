// `slullama connect`: the laptop tunnel in the foreground, questions asked on the terminal.

#include "commands.h"
#include "logging.h"
#include "sshtunnel.h"

#include <QCoreApplication>
#include <QSocketNotifier>
#include <QTextStream>

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
        if (!hasTerminal(QStringLiteral("accept the host key of %1 (%2)").arg(key.host, key.fingerprint))) {
            QTextStream(stderr) << "slullama: to trust it, run slullama connect in a terminal, or "
                                   "connect once with OpenSSH's ssh and check the fingerprint\n";
            reply(false);
            return;
        }
        const QString text =
            QStringLiteral("The authenticity of host '%1' can't be established.\n"
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
        const QString text = (retry ? QStringLiteral("Permission denied, please try again.\n") : QString())
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
    termios m_saved{};
    bool m_echoOff = false;
};

} // namespace

int runConnect(const Config &config)
{
    QTextStream err(stderr);
    if (config.client.host.trimmed().isEmpty()) {
        err << "slullama connect: no head node: give user@headnode or set host in the [client] "
               "section of the config\n";
        return 2;
    }
    auto *app = QCoreApplication::instance();

    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
        err << "slullama connect: cannot set up signal handling\n";
        return 1;
    }
    g_signalFd = fds[1];
    struct sigaction action{};
    action.sa_handler = onSignal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    ::sigaction(SIGINT, &action, nullptr);
    ::sigaction(SIGTERM, &action, nullptr);

    TerminalPrompter prompter;
    SshTunnel tunnel;
    tunnel.setPrompter(&prompter);
    int exitCode = 0;
    bool everConnected = false;

    QSocketNotifier signalNotifier(fds[0], QSocketNotifier::Read);
    QObject::connect(&signalNotifier, &QSocketNotifier::activated, app, [&] {
        char byte;
        [[maybe_unused]] const auto n = ::read(fds[0], &byte, 1);
        prompter.restoreEcho();
        tunnel.stop();
        QTextStream(stderr) << "Tunnel closed.\n";
        app->exit(exitCode);
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
            } else {
                e << "slullama: reconnected, tunnel open again\n";
            }
            out.flush();
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
    const int rc = app->exec();

    signalNotifier.setEnabled(false);
    ::signal(SIGINT, SIG_DFL);
    ::signal(SIGTERM, SIG_DFL);
    g_signalFd = -1;
    ::close(fds[0]);
    ::close(fds[1]);
    return rc;
}

} // namespace slullama
