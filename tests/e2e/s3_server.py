"""Runs moto's S3 on 127.0.0.1, on a free port written to the file named by argv[1].

moto checks `If-None-Match: *` and then writes, so two requests handled at once could both
create the same object; S3 decides atomically. One request at a time (threaded=False) makes
moto as strict as S3 for tarn's concurrent-writer tests.
"""
import sys

from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server


def main() -> None:
    app = DomainDispatcherApplication(create_backend_app)
    server = make_server("127.0.0.1", 0, app, threaded=False)
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(str(server.server_port))
    import os

    os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    server.serve_forever()


if __name__ == "__main__":
    main()
