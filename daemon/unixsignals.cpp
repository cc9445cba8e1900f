#include "unixsignals.h"

#include <QSocketNotifier>

#include <cerrno>
#include <csignal>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

namespace slullama {

namespace {

int g_writeFd = -1;

void handler(int signalNumber)
{
    const int savedErrno = errno;
    const unsigned char byte = static_cast<unsigned char>(signalNumber);
    if (g_writeFd >= 0) [[maybe_unused]]
        const auto n = ::write(g_writeFd, &byte, 1);
    errno = savedErrno;
}

} // namespace

UnixSignals::UnixSignals(QObject *parent) : QObject(parent) { }

UnixSignals::~UnixSignals()
{
    for (int number : std::as_const(m_installed))
        ::signal(number, SIG_DFL);
    if (g_writeFd == m_fds[0])
        g_writeFd = -1;
    for (int fd : m_fds) {
        if (fd >= 0)
            ::close(fd);
    }
}

bool UnixSignals::install(std::initializer_list<int> signalNumbers)
{
    if (m_fds[0] >= 0)
        return false;
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, m_fds) != 0)
        return false;
    g_writeFd = m_fds[0];
    m_notifier = new QSocketNotifier(m_fds[1], QSocketNotifier::Read, this);
    connect(m_notifier, &QSocketNotifier::activated, this, &UnixSignals::onReadable);
    for (int number : signalNumbers) {
        struct sigaction action = {};
        action.sa_handler = handler;
        sigemptyset(&action.sa_mask);
        action.sa_flags = SA_RESTART;
        if (::sigaction(number, &action, nullptr) != 0)
            return false;
        m_installed.append(number);
    }
    return true;
}

void UnixSignals::onReadable()
{
    unsigned char bytes[16];
    const auto n = ::read(m_fds[1], bytes, sizeof bytes);
    for (ssize_t i = 0; i < n; ++i)
        emit received(bytes[i]);
}

} // namespace slullama
