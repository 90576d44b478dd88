/* clove-init: pid 1 of a sandboxed agent's PID namespace, in C.
 *
 * Its Python twin, and the specification of what it does, is `_reap_until` in
 * runtime/sandbox/child.py. The sandbox's init forks the agent from the pre-imported interpreter and
 * then execs this program in its own place, ahead of time in a warm slot. A Python init keeps a
 * copy-on-write image of the whole zygote: on every KILL its exit unmaps that image, about 1 ms in
 * series with the agent's own exit, and it wakes its interpreter twice (the forwarded SIGTERM, then
 * SIGCHLD). This program's image is a few pages and it waits in one poll().
 *
 *   usage: clove-init AGENT_PID LIFELINE_FD
 *
 * - The signals below are forwarded to AGENT_PID. The exec'ing init blocks them before it forks the
 *   agent, so none is lost on the way here: the agent restores its mask, and we take them from a
 *   signalfd. A namespace's init gets a signal only if it catches or blocks it.
 * - Every child is reaped, orphans too. When the agent is reaped, we exit with its status: its exit
 *   code, or 128 + signo after a death by signal. With no child left, we exit with 0.
 * - EOF or an error on LIFELINE_FD (a pipe whose write end only the zygote holds) means the zygote is
 *   gone: we exit with 128 + SIGKILL, and the kernel then kills the whole namespace.
 * Exit status 127 with a message on stderr: bad arguments, or the signalfd could not be made. */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

static const int forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};

static long parse_arg(const char *text, long max) {
    char *end;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < 0 || value > max) return -1;
    return value;
}

/* Reap every child that has exited; never returns once the agent is among them. */
static void reap(pid_t agent) {
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid == 0) return;
        if (pid < 0) {
            if (errno == EINTR) continue;
            _exit(0); /* ECHILD: nothing left to wait for */
        }
        if (pid == agent) _exit(WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status));
    }
}

int main(int argc, char **argv) {
    long agent = argc == 3 ? parse_arg(argv[1], INT_MAX) : -1;
    long lifeline = argc == 3 ? parse_arg(argv[2], INT_MAX) : -1;
    if (agent <= 0 || lifeline < 0) {
        fprintf(stderr, "clove-init: usage: clove-init AGENT_PID LIFELINE_FD\n");
        return 127;
    }
    sigset_t set;
    sigemptyset(&set);
    for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++) sigaddset(&set, forwarded[i]);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, NULL);
    int sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0) {
        perror("clove-init: signalfd");
        return 127;
    }
    for (;;) {
        reap((pid_t)agent); /* also what exited before we were exec'd */
        struct pollfd fds[2] = {{.fd = sfd, .events = POLLIN}, {.fd = (int)lifeline, .events = POLLIN}};
        if (poll(fds, 2, -1) < 0) continue; /* EINTR */
        if (fds[1].revents) _exit(128 + SIGKILL);
        struct signalfd_siginfo info;
        while (read(sfd, &info, sizeof info) == (ssize_t)sizeof info)
            if (info.ssi_signo != SIGCHLD) kill((pid_t)agent, (int)info.ssi_signo);
    }
}
