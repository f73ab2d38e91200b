// microhttpd.h relies on these types being declared before it is included.
#include <stdarg.h>
#include <stdint.h>
#include <malloc.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <microhttpd.h>
#include <arpa/inet.h>
#include <string.h>
#include <unistd.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

// Gives memory freed back to the system: malloc keeps what a large body occupied for reuse, and after
// many such bodies were freed at once that is the daemon's whole peak. Glibc's Swift module has no
// <malloc.h>.
static inline void tw_malloc_trim(void) {
    malloc_trim(0);
}

// Swift cannot call C variadic functions, and MHD_set_response_options is one.
static inline enum MHD_Result tw_mhd_set_response_flags(struct MHD_Response *response, enum MHD_ResponseFlags flags) {
    return MHD_set_response_options(response, flags, MHD_RO_END);
}

// Hands an accepted socket to `daemon` with the peer address libmicrohttpd records for it. The socket
// is closed whatever the result: by libmicrohttpd, or here when the peer has already gone.
static inline enum MHD_Result tw_mhd_add_connection(struct MHD_Daemon *daemon, int fd) {
    struct sockaddr_storage address;
    socklen_t length = sizeof(address);
    memset(&address, 0, sizeof(address));
    if (getpeername(fd, (struct sockaddr *)&address, &length) != 0) {
        close(fd);
        return MHD_NO;
    }
    return MHD_add_connection(daemon, fd, (const struct sockaddr *)&address, length);
}

// The pointer stored for `connection` through the `socket_context` of MHD_NotifyConnectionCallback.
static inline void *tw_mhd_socket_context(struct MHD_Connection *connection) {
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return info == NULL ? NULL : info->socket_context;
}

// The socket of `connection`, or -1.
static inline int tw_mhd_connection_fd(struct MHD_Connection *connection) {
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
    return info == NULL ? -1 : info->connect_fd;
}

// What a TLS client showed: see tw_mhd_client_certificate.
enum tw_client_certificate {
    TW_CLIENT_CERTIFICATE_NOT_TLS = 0,
    TW_CLIENT_CERTIFICATE_NONE = 1,
    TW_CLIENT_CERTIFICATE_VERIFIED = 2,
    TW_CLIENT_CERTIFICATE_REFUSED = 3,
};

static inline gnutls_session_t tw_mhd_tls_session(struct MHD_Connection *connection) {
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    return info == NULL ? NULL : (gnutls_session_t)info->tls_session;
}

// Whether the client of `connection` showed a certificate, and if so whether it chains to the CAs the
// daemon was given (MHD_OPTION_HTTPS_MEM_TRUST), is within its validity period and allows TLS client
// authentication (a certificate without an extended key usage allows any).
static inline enum tw_client_certificate tw_mhd_client_certificate(struct MHD_Connection *connection) {
    gnutls_session_t session = tw_mhd_tls_session(connection);
    if (session == NULL) return TW_CLIENT_CERTIFICATE_NOT_TLS;
    unsigned int count = 0;
    if (gnutls_certificate_get_peers(session, &count) == NULL || count == 0) return TW_CLIENT_CERTIFICATE_NONE;
    gnutls_typed_vdata_st purpose = {
        .type = GNUTLS_DT_KEY_PURPOSE_OID, .data = (unsigned char *)GNUTLS_KP_TLS_WWW_CLIENT, .size = 0};
    unsigned int status = 0;
    if (gnutls_certificate_verify_peers(session, &purpose, 1, &status) < 0 || status != 0) {
        return TW_CLIENT_CERTIFICATE_REFUSED;
    }
    return TW_CLIENT_CERTIFICATE_VERIFIED;
}

// The subject alternative names of the client's certificate (DNS names, e-mail addresses, URIs and IP
// addresses as text), each followed by a newline, into `buffer`. Returns the bytes written; 0 when
// there is no certificate or no such name. Names that do not fit are left out.
static inline size_t tw_mhd_client_certificate_names(
    struct MHD_Connection *connection, char *buffer, size_t capacity) {
    gnutls_session_t session = tw_mhd_tls_session(connection);
    if (session == NULL) return 0;
    unsigned int count = 0;
    const gnutls_datum_t *chain = gnutls_certificate_get_peers(session, &count);
    if (chain == NULL || count == 0) return 0;
    gnutls_x509_crt_t certificate;
    if (gnutls_x509_crt_init(&certificate) < 0) return 0;
    size_t written = 0;
    if (gnutls_x509_crt_import(certificate, &chain[0], GNUTLS_X509_FMT_DER) >= 0) {
        // Bounded: a malformed extension must not keep this loop going.
        for (unsigned int index = 0; index < 64; index++) {
            char name[1024];
            size_t size = sizeof(name) - 1;
            int type = gnutls_x509_crt_get_subject_alt_name(certificate, index, name, &size, NULL);
            if (type == GNUTLS_E_SHORT_MEMORY_BUFFER) continue;  // too long to be a configured name
            if (type < 0) break;  // no more names, or a malformed extension
            char text[INET6_ADDRSTRLEN];
            const char *value = name;
            if (type == GNUTLS_SAN_IPADDRESS) {
                int family = size == 4 ? AF_INET : size == 16 ? AF_INET6 : 0;
                if (family == 0 || inet_ntop(family, name, text, sizeof(text)) == NULL) continue;
                value = text;
                size = strlen(text);
            } else if (type == GNUTLS_SAN_DNSNAME || type == GNUTLS_SAN_RFC822NAME || type == GNUTLS_SAN_URI) {
                name[size] = 0;
                if (strlen(name) != size) continue;  // an embedded NUL: never matches a configured name
            } else {
                continue;
            }
            if (written + size + 1 > capacity) continue;
            memcpy(buffer + written, value, size);
            written += size;
            buffer[written++] = '\n';
        }
    }
    gnutls_x509_crt_deinit(certificate);
    return written;
}

// Why the PEM certificate chain `cert` and private key `key` cannot serve TLS together (GnuTLS's own
// words: a key that does not match the certificate, a body that is no certificate), or NULL when they
// can. libmicrohttpd only says that TLS support failed to initialize.
static inline const char *tw_tls_key_pair_error(const char *cert, size_t cert_length, const char *key, size_t key_length) {
    gnutls_certificate_credentials_t credentials;
    if (gnutls_certificate_allocate_credentials(&credentials) < 0) return "GnuTLS could not allocate credentials";
    gnutls_datum_t certificate = {(unsigned char *)cert, (unsigned int)cert_length};
    gnutls_datum_t private_key = {(unsigned char *)key, (unsigned int)key_length};
    int result = gnutls_certificate_set_x509_key_mem2(
        credentials, &certificate, &private_key, GNUTLS_X509_FMT_PEM, NULL, 0);
    gnutls_certificate_free_credentials(credentials);
    return result < 0 ? gnutls_strerror(result) : NULL;
}

// Why the PEM `cas` hold no certificate GnuTLS can trust, or NULL when they hold at least one.
static inline const char *tw_tls_trust_error(const char *cas, size_t length) {
    gnutls_certificate_credentials_t credentials;
    if (gnutls_certificate_allocate_credentials(&credentials) < 0) return "GnuTLS could not allocate credentials";
    gnutls_datum_t data = {(unsigned char *)cas, (unsigned int)length};
    int result = gnutls_certificate_set_x509_trust_mem(credentials, &data, GNUTLS_X509_FMT_PEM);
    gnutls_certificate_free_credentials(credentials);
    if (result < 0) return gnutls_strerror(result);
    return result == 0 ? "no certificate in it" : NULL;
}
