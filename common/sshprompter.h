#pragma once

#include <QString>
#include <QStringList>

#include <functional>
#include <optional>

namespace slullama {

// What the user is asked to trust when the head node's key is not in known_hosts yet.
struct SshHostKeyInfo
{
    QString host;           // as written to known_hosts: "host" or "[host]:port"
    QString keyType;        // e.g. "ssh-ed25519"
    QString fingerprint;    // "SHA256:..." as OpenSSH prints it
    QString knownHostsFile; // where an accepted key is written
};

// One keyboard-interactive prompt, worded by the server (e.g. "Verification code: ").
struct SshKbdPrompt
{
    QString text;
    bool echo = false; // false: a secret, do not show what is typed
};

// The questions the tunnel may have to ask a person. The tray answers with dialogs, the CLI on
// the terminal, tests with canned answers.
//
// Every method is called on the thread the SshTunnel lives on (the GUI/main thread) and must not
// block it for long: answer by calling `reply` exactly once, now or later, from any thread. The
// tunnel's worker waits for the answer; std::nullopt / false means "cancel". A reply that comes
// after the tunnel was stopped or destroyed is ignored safely.
class SshPrompter
{
public:
    using BoolReply = std::function<void(bool)>;
    using TextReply = std::function<void(std::optional<QString>)>;
    using TextsReply = std::function<void(std::optional<QStringList>)>;

    virtual ~SshPrompter() = default;

    // The host key is unknown. true = trust it and add it to known_hosts.
    virtual void acceptHostKey(const SshHostKeyInfo &key, BoolReply reply) = 0;
    // A private key file is encrypted. `retry` is true after a wrong passphrase.
    virtual void askPassphrase(const QString &keyFile, bool retry, TextReply reply) = 0;
    // A keyboard-interactive round (e.g. a one-time code). Show name, instruction and each prompt
    // as given; reply with one answer per prompt, in order.
    virtual void askKbdInteractive(const QString &name, const QString &instruction,
                                   const QList<SshKbdPrompt> &prompts, TextsReply reply) = 0;
    // Password authentication for `userAtHost` ("user@host"). `retry` after a refused password.
    virtual void askPassword(const QString &userAtHost, bool retry, TextReply reply) = 0;
};

} // namespace slullama
