#define _GNU_SOURCE
#include "CTaskWatchSocket.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/un.h>
#include <unistd.h>

int tw_peer_credentials_get(int fd, tw_peer_credentials *out) {
    struct ucred cred;
    socklen_t length = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &length) != 0) return -1;
    out->pid = cred.pid;
    out->uid = cred.uid;
    out->gid = cred.gid;
    return 0;
}

#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS 59
#endif

int tw_peer_groups_get(int fd, uint32_t *groups, int capacity) {
    socklen_t length = (socklen_t)(capacity * sizeof(gid_t));
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &length) == 0 || errno == ERANGE) {
        return (int)(length / sizeof(gid_t));
    }
    return -1;
}

ssize_t tw_recv_message(int fd, void *buffer, size_t capacity, int *truncated) {
    struct iovec iov = {.iov_base = buffer, .iov_len = capacity};
    struct msghdr msg;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    ssize_t n = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    *truncated = (n >= 0 && (msg.msg_flags & MSG_TRUNC)) ? 1 : 0;
    return n;
}

int tw_recv_messages(int fd, void *buffers, size_t capacity, unsigned int count, size_t *lengths, int *truncated) {
    if (count > TW_RECV_BATCH_MAX) count = TW_RECV_BATCH_MAX;
    struct iovec iov[TW_RECV_BATCH_MAX];
    struct mmsghdr messages[TW_RECV_BATCH_MAX];
    memset(messages, 0, sizeof(messages[0]) * count);
    for (unsigned int i = 0; i < count; i++) {
        iov[i].iov_base = (char *)buffers + i * capacity;
        iov[i].iov_len = capacity;
        messages[i].msg_hdr.msg_iov = &iov[i];
        messages[i].msg_hdr.msg_iovlen = 1;
    }
    int received = recvmmsg(fd, messages, count, MSG_DONTWAIT | MSG_CMSG_CLOEXEC, NULL);
    for (int i = 0; i < received; i++) {
        lengths[i] = messages[i].msg_len;
        truncated[i] = (messages[i].msg_hdr.msg_flags & MSG_TRUNC) ? 1 : 0;
    }
    return received;
}

ssize_t tw_send_message(int fd, const void *buffer, size_t length) {
    return send(fd, buffer, length, MSG_DONTWAIT | MSG_NOSIGNAL);
}

int tw_seqpacket_socket(void) {
    return socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
}

static int fill_address(struct sockaddr_un *address, const char *path) {
    memset(address, 0, sizeof(*address));
    address->sun_family = AF_UNIX;
    size_t length = strlen(path);
    if (length == 0 || length >= sizeof(address->sun_path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(address->sun_path, path, length + 1);
    return 0;
}

int tw_unix_bind(int fd, const char *path) {
    struct sockaddr_un address;
    if (fill_address(&address, path) != 0) return -1;
    return bind(fd, (struct sockaddr *)&address, sizeof(address));
}

int tw_client_directory_trusted(const char *path) {
    char directory[PATH_MAX];
    size_t length = strlen(path);
    if (length == 0 || length >= sizeof(directory)) return 1;
    memcpy(directory, path, length + 1);
    char *slash = strrchr(directory, '/');
    if (slash == NULL || slash == directory) return 1;
    *slash = '\0';
    char parent[PATH_MAX];
    memcpy(parent, directory, strlen(directory) + 1);
    char *parentSlash = strrchr(parent, '/');
    if (parentSlash == NULL) return 1;
    if (parentSlash == parent) parentSlash[1] = '\0'; else *parentSlash = '\0';
    struct stat status;
    if (stat(parent, &status) != 0 || (status.st_mode & S_IWOTH) == 0) return 1;
    if (lstat(directory, &status) != 0) return 0;
    // Root's is trusted too: a root daemon's socket in /tmp, named through TASKWATCH_SOCKET.
    return S_ISDIR(status.st_mode) && (status.st_uid == geteuid() || status.st_uid == 0) &&
           (status.st_mode & (S_IWGRP | S_IWOTH)) == 0;
}

// chmod(2) on the path follows a symlink: someone who can rename entries in the socket's directory
// could put one there between bind and chmod and have a root daemon chmod any file. O_PATH|O_NOFOLLOW
// pins the entry itself; the mode is then set through the descriptor's /proc link, as glibc's
// fchmodat(AT_SYMLINK_NOFOLLOW) does, after checking it is our socket.
int tw_chmod_own_socket(const char *path, unsigned int mode) {
    int fd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return -1;
    struct stat status;
    if (fstat(fd, &status) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    if (S_ISLNK(status.st_mode)) {
        close(fd);
        errno = ELOOP;
        return -1;
    }
    if (!S_ISSOCK(status.st_mode) || status.st_uid != geteuid()) {
        close(fd);
        errno = EPERM;
        return -1;
    }
    char link[64];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    int result = chmod(link, (mode_t)mode);
    int saved = errno;
    close(fd);
    errno = saved;
    return result;
}

int tw_unix_connect(int fd, const char *path) {
    struct sockaddr_un address;
    if (fill_address(&address, path) != 0) return -1;
    return connect(fd, (struct sockaddr *)&address, sizeof(address));
}

int tw_socket_type(int fd) {
    int type = 0;
    socklen_t length = sizeof(type);
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &length) != 0) return -1;
    return type;
}

int tw_socket_is_listening(int fd) {
    int listening = 0;
    socklen_t length = sizeof(listening);
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &length) != 0) return -1;
    return listening ? 1 : 0;
}

int tw_socket_domain(int fd) {
    int domain = 0;
    socklen_t length = sizeof(domain);
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &length) != 0) return -1;
    return domain;
}

int tw_unix_send_datagram(const char *address, size_t address_length, const void *message, size_t length) {
    struct sockaddr_un target;
    memset(&target, 0, sizeof(target));
    target.sun_family = AF_UNIX;
    if (address_length < 2 || address_length >= sizeof(target.sun_path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(target.sun_path, address, address_length);
    socklen_t target_length = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + address_length);
    if (address[0] == '@') {
        // Abstract names start with NUL and are not NUL-terminated: the length delimits them.
        target.sun_path[0] = '\0';
    } else {
        target_length += 1;
    }
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    ssize_t sent = sendto(fd, message, length, MSG_NOSIGNAL, (struct sockaddr *)&target, target_length);
    int saved = errno;
    close(fd);
    errno = saved;
    return sent == (ssize_t)length ? 0 : -1;
}

int tw_epoll_create(void) {
    return epoll_create1(EPOLL_CLOEXEC);
}

int tw_epoll_add(int epoll_fd, int fd, uint64_t token) {
    struct epoll_event event;
    memset(&event, 0, sizeof(event));
    event.events = EPOLLIN;
    event.data.u64 = token;
    return epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &event);
}

int tw_epoll_remove(int epoll_fd, int fd) {
    return epoll_ctl(epoll_fd, EPOLL_CTL_DEL, fd, NULL);
}

int tw_epoll_wait(int epoll_fd, tw_poll_event *events, int capacity, int timeout_ms) {
    struct epoll_event raw[1024];
    if (capacity > 1024) capacity = 1024;
    int count = epoll_wait(epoll_fd, raw, capacity, timeout_ms);
    for (int i = 0; i < count; i++) {
        events[i].token = raw[i].data.u64;
        events[i].readable = (raw[i].events & EPOLLIN) ? 1 : 0;
        events[i].hangup = (raw[i].events & (EPOLLHUP | EPOLLERR)) ? 1 : 0;
    }
    return count;
}

int tw_eventfd_create(void) {
    return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}

int tw_eventfd_signal(int fd) {
    uint64_t one = 1;
    return write(fd, &one, sizeof(one)) == (ssize_t)sizeof(one) ? 0 : -1;
}

void tw_eventfd_drain(int fd) {
    uint64_t value;
    (void)!read(fd, &value, sizeof(value));
}

int tw_accept(int listen_fd) {
    return accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

void tw_thread_set_name(const char *name) {
    char truncated[16];
    strncpy(truncated, name, sizeof(truncated) - 1);
    truncated[sizeof(truncated) - 1] = '\0';
    pthread_setname_np(pthread_self(), truncated);
}

// Descriptors closed in a forked child, stored as fd + 1 so that 0 (a zeroed static) is a free place,
// with the device and inode `fstat` gave when they were added. Atomics, not a lock: the child handler
// runs after fork() in a copy of the process where another thread may have held any lock. The child
// closes a number only when it still names that file: an app that closed the descriptor (a `close`
// done twice) may have the number for a file of its own by then, which its child must keep.
#define TW_CLOSE_ON_FORK_PLACES 16
#define TW_CLOSE_ON_FORK_RESERVED (-1)
static _Atomic int tw_close_on_fork[TW_CLOSE_ON_FORK_PLACES];
static _Atomic uint64_t tw_close_on_fork_device[TW_CLOSE_ON_FORK_PLACES];
static _Atomic uint64_t tw_close_on_fork_inode[TW_CLOSE_ON_FORK_PLACES];
static pthread_once_t tw_close_on_fork_once = PTHREAD_ONCE_INIT;

static void tw_close_on_fork_child(void) {
    for (int i = 0; i < TW_CLOSE_ON_FORK_PLACES; i++) {
        int stored = atomic_load(&tw_close_on_fork[i]);
        if (stored <= 0) continue;
        atomic_store(&tw_close_on_fork[i], 0);
        struct stat status;
        // fstat and close are async-signal-safe.
        if (fstat(stored - 1, &status) == 0 && (uint64_t)status.st_dev == atomic_load(&tw_close_on_fork_device[i]) &&
            (uint64_t)status.st_ino == atomic_load(&tw_close_on_fork_inode[i])) {
            close(stored - 1);
        }
    }
}

static void tw_close_on_fork_install(void) { pthread_atfork(NULL, NULL, tw_close_on_fork_child); }

int tw_close_on_fork_add(int fd) {
    if (fd < 0) return -1;
    struct stat status;
    if (fstat(fd, &status) != 0) return -1;
    pthread_once(&tw_close_on_fork_once, tw_close_on_fork_install);
    for (int i = 0; i < TW_CLOSE_ON_FORK_PLACES; i++) {
        int expected = 0;
        // Reserved while its identity is written: the child handler skips a place that is not > 0.
        if (atomic_compare_exchange_strong(&tw_close_on_fork[i], &expected, TW_CLOSE_ON_FORK_RESERVED)) {
            atomic_store(&tw_close_on_fork_device[i], (uint64_t)status.st_dev);
            atomic_store(&tw_close_on_fork_inode[i], (uint64_t)status.st_ino);
            atomic_store(&tw_close_on_fork[i], fd + 1);
            return 0;
        }
    }
    return -1;
}

void tw_close_on_fork_remove(int fd) {
    for (int i = 0; i < TW_CLOSE_ON_FORK_PLACES; i++) {
        int expected = fd + 1;
        if (atomic_compare_exchange_strong(&tw_close_on_fork[i], &expected, 0)) return;
    }
}
