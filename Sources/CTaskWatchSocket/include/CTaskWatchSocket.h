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

/// Receives one SEQPACKET message without blocking. Returns the byte count, 0 at end of stream,
/// or -1 with errno set. `*truncated` is set when the message was longer than `capacity`.
ssize_t tw_recv_message(int fd, void *buffer, size_t capacity, int *truncated);

/// Sends one message without blocking and without raising SIGPIPE. Returns bytes sent or -1.
ssize_t tw_send_message(int fd, const void *buffer, size_t length);

/// Creates a non-blocking, close-on-exec AF_UNIX SOCK_SEQPACKET socket, or -1.
int tw_seqpacket_socket(void);

/// Binds `fd` to a filesystem path (which must fit sun_path). Returns 0 or -1 with errno set.
int tw_unix_bind(int fd, const char *path);

/// Connects `fd` to a filesystem path. Returns 0 or -1 with errno set (EINPROGRESS never happens for
/// AF_UNIX; EAGAIN means the listener's backlog is full).
int tw_unix_connect(int fd, const char *path);

/// The socket type of `fd` (SOCK_STREAM, SOCK_SEQPACKET, ...) or -1.
int tw_socket_type(int fd);

/// Whether `fd` is a listening socket: 1, 0, or -1 on error.
int tw_socket_is_listening(int fd);

#endif
