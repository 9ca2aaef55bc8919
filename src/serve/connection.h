// connection.h: sockets. cannot_listen(): can the server have its port? And is the client of a
// request still there? cpp-httplib 0.11 (Debian 12) does not give
// a handler its connection's socket, and a client that goes away while its request waits for the
// model is otherwise noticed only at the next failed write. So the handler finds its socket by
// the connection's addresses (this process's sockets whose local and peer endpoints are the
// request's) and polls it for the peer's close. The socket stays open while the handler runs, so
// the descriptor cannot be reused under it.
#pragma once
#include <string>

namespace gptoss::serve {

// The socket of the connection local_addr:local_port <-> remote_addr:remote_port, or -1.
int find_connection_socket(const std::string& local_addr, int local_port,
                           const std::string& remote_addr, int remote_port);
// True when the peer has closed or reset the connection (never blocks; false for fd < 0).
bool peer_gone(int fd);
// "" if a server could listen on host:port now (bound and released again, so a busy port or a
// wrong address is reported before a model takes minutes to load), else why not.
std::string cannot_listen(const std::string& host, int port);

}  // namespace gptoss::serve
