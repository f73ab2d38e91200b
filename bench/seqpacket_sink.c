/* seqpacket_sink: the minimal receiver, the ceiling taskwatchd is measured against.
 *
 * Listens on an AF_UNIX SOCK_SEQPACKET path, accepts clients with a level-triggered epoll loop, reads
 * messages up to 32 per recvmmsg call (as taskwatchd does) and counts them.
 * The measurement window opens at the first message and lasts D seconds; then it prints JSON.
 *
 *   seqpacket_sink PATH DURATION
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: seqpacket_sink PATH DURATION\n"); return 2; }
    const char *path = argv[1];
    double duration = atof(argv[2]);
    unlink(path);
    int lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    strncpy(addr.sun_path, path, sizeof addr.sun_path - 1);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) || listen(lfd, 1024)) { perror("bind/listen"); return 1; }
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    enum { BATCH = 32, CAPACITY = 65537 };
    static uint8_t buffers[BATCH][CAPACITY];
    struct iovec iov[BATCH];
    struct mmsghdr batch[BATCH];
    uint64_t messages = 0, bytes = 0;
    int clients = 0;
    double start = 0, deadline = 1e300;
    struct epoll_event events[256];
    while (now_s() < deadline) {
        int n = epoll_wait(ep, events, 256, 100);
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == lfd) {
                int c;
                while ((c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    struct epoll_event cev = {.events = EPOLLIN, .data.fd = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
                    clients++;
                }
                continue;
            }
            /* At most 64 messages per wakeup per connection, as taskwatchd does. */
            for (int budget = 64; budget > 0;) {
                int asked = budget < BATCH ? budget : BATCH;
                memset(batch, 0, sizeof batch);
                for (int k = 0; k < asked; k++) {
                    iov[k] = (struct iovec){.iov_base = buffers[k], .iov_len = CAPACITY};
                    batch[k].msg_hdr.msg_iov = &iov[k];
                    batch[k].msg_hdr.msg_iovlen = 1;
                }
                int r = recvmmsg(fd, batch, asked, MSG_DONTWAIT, NULL);
                int closed = r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR);
                for (int k = 0; k < r && !closed; k++) {
                    if (batch[k].msg_len == 0) { closed = 1; break; }  /* end of stream */
                    if (start == 0) { start = now_s(); deadline = start + duration; }
                    messages++;
                    bytes += batch[k].msg_len;
                }
                if (closed) {
                    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
                    close(fd);
                }
                if (closed || r < asked) break;
                budget -= r;
            }
        }
    }
    double seconds = now_s() - start;
    printf("{\"clients\":%d,\"seconds\":%.3f,\"messages\":%llu,\"bytes\":%llu,\"messages_per_s\":%.0f}\n", clients,
           seconds, (unsigned long long)messages, (unsigned long long)bytes, messages / seconds);
    unlink(path);
    return 0;
}
