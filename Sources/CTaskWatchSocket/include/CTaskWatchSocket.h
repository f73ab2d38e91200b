#ifndef CTASKWATCHSOCKET_H
#define CTASKWATCHSOCKET_H

#include <stdint.h>
#include <sys/types.h>

/// The peer's credentials as the kernel recorded them at connect time.
/// Our own struct because Glibc's Swift module does not import `struct ucred`.
typedef struct {
    int32_t pid;
    uint32_t uid;
    uint32_t gid;
} tw_peer_credentials;

/// Reads `SO_PEERCRED` of a connected Unix socket. Returns 0 or -1 with errno set.
int tw_peer_credentials_get(int fd, tw_peer_credentials *out);

/// Reads the peer's supplementary groups as of its `connect` (`SO_PEERGROUPS`, Linux 4.13): writes up
/// to `capacity` gids to `groups` and returns how many the peer has, which may exceed `capacity` (call
/// again with room for them); -1 with errno set when the kernel cannot tell.
int tw_peer_groups_get(int fd, uint32_t *groups, int capacity);

/// Receives one SEQPACKET message without blocking. Returns the byte count, 0 at end of stream,
/// or -1 with errno set. `*truncated` is set when the message was longer than `capacity`.
ssize_t tw_recv_message(int fd, void *buffer, size_t capacity, int *truncated);

/// The most messages one `tw_recv_messages` call takes.
#define TW_RECV_BATCH_MAX 32

/// Receives up to `count` (at most TW_RECV_BATCH_MAX) SEQPACKET messages in one system call
/// (recvmmsg), without blocking: message `i` goes to `buffers + i * capacity`, its length to
/// `lengths[i]` and whether it was longer than `capacity` to `truncated[i]`. Returns how many were
/// received, or -1 with errno set when none was. A length of 0 is the end of the stream.
int tw_recv_messages(int fd, void *buffers, size_t capacity, unsigned int count, size_t *lengths, int *truncated);

/// Sends one message without blocking and without raising SIGPIPE. Returns bytes sent or -1.
ssize_t tw_send_message(int fd, const void *buffer, size_t length);

/// Creates a non-blocking, close-on-exec AF_UNIX SOCK_SEQPACKET socket, or -1.
int tw_seqpacket_socket(void);

/// Binds `fd` to a filesystem path (which must fit sun_path). Returns 0 or -1 with errno set.
int tw_unix_bind(int fd, const char *path);

/// Whether a client may trust the directory of the socket at `path`: 1 unless that directory sits in a
/// world-writable one (`/tmp/taskwatch-$UID`), where it must be a real directory owned by this
/// process's effective uid (or root) and writable by no one else; 0 otherwise. Anyone can create
/// `/tmp/taskwatch-<uid>` first and listen there for that uid's reports.
int tw_client_directory_trusted(const char *path);

/// Sets the mode of the socket file at `path` without following a symlink there, and only if it is a
/// socket owned by this process's effective uid. Returns 0, or -1 with errno set (ELOOP: a symlink;
/// EPERM: not a socket of ours).
int tw_chmod_own_socket(const char *path, unsigned int mode);

/// Connects `fd` to a filesystem path. Returns 0 or -1 with errno set (EINPROGRESS never happens for
/// AF_UNIX; EAGAIN means the listener's backlog is full).
int tw_unix_connect(int fd, const char *path);

/// The socket type of `fd` (SOCK_STREAM, SOCK_SEQPACKET, ...) or -1.
int tw_socket_type(int fd);

/// Whether `fd` is a listening socket: 1, 0, or -1 on error.
int tw_socket_is_listening(int fd);

/// The address family of socket `fd` (AF_UNIX, AF_INET, ...) or -1.
int tw_socket_domain(int fd);

/// Sends one datagram to the AF_UNIX datagram socket at `address` (`address_length` bytes; a leading
/// '@' names an abstract socket, as in systemd's NOTIFY_SOCKET) from a fresh socket that is closed
/// before returning. Returns 0 or -1 with errno set.
int tw_unix_send_datagram(const char *address, size_t address_length, const void *message, size_t length);

/// One readiness event. Our own unpacked struct: `struct epoll_event` is packed on x86_64 and epoll is
/// not in Glibc's Swift module.
typedef struct {
    uint64_t token;
    /// Readable (or end of stream pending).
    int32_t readable;
    /// Hang-up or error: the peer is gone once the pending messages are read.
    int32_t hangup;
} tw_poll_event;

/// Creates a close-on-exec epoll instance, or -1.
int tw_epoll_create(void);

/// Watches `fd` for input (level-triggered), reporting `token`. Returns 0 or -1 with errno set.
int tw_epoll_add(int epoll_fd, int fd, uint64_t token);

/// Stops watching `fd`. Returns 0 or -1 with errno set.
int tw_epoll_remove(int epoll_fd, int fd);

/// Waits up to `timeout_ms` (-1 forever) for at most `capacity` events (at most 1024). Returns the
/// count or -1 with errno set.
int tw_epoll_wait(int epoll_fd, tw_poll_event *events, int capacity, int timeout_ms);

/// Creates a non-blocking, close-on-exec eventfd, or -1.
int tw_eventfd_create(void);

/// Makes the eventfd readable. Returns 0 or -1.
int tw_eventfd_signal(int fd);

/// Resets the eventfd.
void tw_eventfd_drain(int fd);

/// Accepts one connection as non-blocking and close-on-exec, or -1 with errno set.
int tw_accept(int listen_fd);

/// Closes `fd` in a child created by `fork()` (a `pthread_atfork` child handler), for a connection the
/// child must not hold open: close-on-exec covers only a child that executes another program. The child
/// closes it only if it still names the file it named when added (same device and inode): a number the
/// app closed and reused is the app's. Up to 16 descriptors at once; returns 0, or -1 when all places
/// are taken or `fd` is not open (`fd` then stays open in a child).
int tw_close_on_fork_add(int fd);

/// Stops closing `fd` in a forked child; call before closing `fd`, whose number may then be reused.
void tw_close_on_fork_remove(int fd);

/// Names the calling thread (at most 15 bytes are kept), for `top -H` and debuggers.
void tw_thread_set_name(const char *name);

#endif
