# vlq on a GPU server: `vlq worker` in a container (README "Deployment").
#
# Untested as an image: no image registry is reachable where vlq is developed, so this
# file has only been checked by reading it. Its build step is exactly what CI proves on a
# fresh machine (`make deps && make`); the runtime stage installs only the packages that
# hold the shared libraries ./vlq links (found with readelf + dpkg in the build stage,
# not a hand-kept list, so it follows the distribution's package names).
#
#   docker build -t vlq .
#   docker run --gpus all ... vlq          (the full line is in the README)
#
# Volumes: /var/lib/vlq (the queue database, vlq.db), /models (the converted model,
# model.vlq; read-only), /in (the files jobs read; read-only, the same paths for
# `vlq submit` and the worker), /out ([output] dir). The config is /etc/vlq/vlq.conf
# (mount your own over it to change any key).

ARG CUDA_VERSION=12.6.3
ARG UBUNTU_VERSION=24.04

FROM nvidia/cuda:${CUDA_VERSION}-devel-ubuntu${UBUNTU_VERSION} AS build
WORKDIR /src
COPY . .
# the same two commands as a fresh clone (make deps runs apt-get as root here)
RUN make deps && make -j"$(nproc)"
# the packages that hold the libraries ./vlq is linked with (their own dependencies come
# with them through apt)
RUN set -e; for so in $(readelf -d vlq | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do \
        lib=$(ldd vlq | awk -v s="$so" '$1 == s { print $3 }'); \
        [ -n "$lib" ] || { echo "no $so for vlq" >&2; exit 1; }; \
        real=$(realpath "$lib"); \
        dpkg -S "*/$(basename "$(dirname "$real")")/$(basename "$real")"; \
    done > needed.txt; \
    cut -d: -f1 needed.txt | sort -u > runtime-packages.txt; cat runtime-packages.txt

FROM nvidia/cuda:${CUDA_VERSION}-runtime-ubuntu${UBUNTU_VERSION}
COPY --from=build /src/runtime-packages.txt /tmp/runtime-packages.txt
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       $(cat /tmp/runtime-packages.txt) \
    && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages.txt
COPY --from=build /src/vlq /usr/local/bin/vlq
# the CUDA backend plugin (built in the devel stage, where nvcc is), found by vlq there
COPY --from=build /src/build/vlq-backend-cuda.so /usr/local/lib/vlq/vlq-backend-cuda.so
COPY --from=build /src/config/vlq.conf /etc/vlq/vlq.conf.example
# the container's config: everything at its default but where the volumes are
RUN printf '%s\n' '# vlq in a container (see /etc/vlq/vlq.conf.example for every key)' \
        '[queue]' 'db = /var/lib/vlq/vlq.db' \
        '[model]' 'path = /models/model.vlq' \
        '[output]' 'dir = /out' > /etc/vlq/vlq.conf \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/vlq --shell /usr/sbin/nologin vlq \
    && mkdir -p /var/lib/vlq /models /in /out \
    && chown vlq:vlq /var/lib/vlq /out
VOLUME ["/var/lib/vlq", "/models", "/in", "/out"]
USER vlq
WORKDIR /var/lib/vlq
# vlq worker hands its running jobs back on SIGTERM (no attempt spent): give it the time
# to finish the step it is in (docker stop --time / docker run --stop-timeout)
STOPSIGNAL SIGTERM
CMD ["vlq", "worker"]
