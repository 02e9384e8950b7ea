"""An FTP server (pyftpdlib, Debian python3-pyftpdlib) on 127.0.0.1 that
behaves like servers without the RFC 3659 commands, for tests/it/upload.rs.

argv: port, root, first passive port, last passive port, mode:
  nosize   SIZE is unknown (500) and MLST too: only LIST tells a size
  size550  SIZE always answers 550, as servers that refuse it in some modes
  sizewrong SIZE, MLST and LIST report one byte more than the file holds
Account audit / secret.
"""
import os
import sys

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import FTPServer

port, root, pasv_lo, pasv_hi, mode = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
os.makedirs(root, exist_ok=True)
auth = DummyAuthorizer()
auth.add_user("audit", "secret", root, perm="elradfmwMT")


class Handler(FTPHandler):
    proto_cmds = dict(FTPHandler.proto_cmds)
    if mode == "nosize":
        del proto_cmds["SIZE"]
        del proto_cmds["MLST"]

    def ftp_SIZE(self, path):
        if mode == "size550":
            self.respond("550 SIZE not allowed in ASCII mode.")
            return
        if mode == "sizewrong":
            try:
                self.respond("213 %d" % (os.path.getsize(path) + 1))
                return
            except OSError:
                pass
        return super().ftp_SIZE(path)


Handler.authorizer = auth
Handler.passive_ports = range(pasv_lo, pasv_hi + 1)
FTPServer(("127.0.0.1", port), Handler).serve_forever()
