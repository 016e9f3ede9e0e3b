# Dockerfile: the container images of the cdp services, one target each.
#
#   podman build --target identity -t cdp-identity .      (docker build alike)
#
# Stage "build" compiles every service present in services/ (CMake, Release)
# on Debian bookworm. Stage "runtime" is a slim bookworm with only the shared
# libraries the binaries load (deploy/setup-debian --runtime) and the
# unprivileged user 10001; it fails the build if any library a binary needs
# is missing. Each service target adds its one binary, its ports and its
# entrypoint. Configuration is by environment (common/cdp_service.h); the
# defaults listen on 0.0.0.0 at the service's ports below.
#
# The six planned services have targets; building one whose services/<name>/
# does not exist yet fails at its COPY. A seventh service: one more target at
# the end, like the others (its ports are in deploy/services).

ARG DEBIAN_IMAGE=debian:bookworm-slim

# ---------------------------------------------------------------- build
FROM ${DEBIAN_IMAGE} AS build
COPY deploy/setup-debian /usr/local/sbin/cdp-setup-debian
RUN cdp-setup-debian --build --clean
WORKDIR /src
COPY CMakeLists.txt ./
COPY proto proto
COPY common common
COPY services services
# Builds cdp-<name> for every services/<name>/main.c, strips them into /out
# and lists the shared objects they load in /out/sonames.
RUN set -eu; \
    targets=""; \
    for main in services/*/main.c; do \
      name=${main#services/}; name=${name%/main.c}; \
      targets="$targets cdp-$name"; \
    done; \
    cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release >/dev/null; \
    cmake --build /build -j "$(nproc)" --target $targets; \
    mkdir -p /out; \
    for t in $targets; do install -s -m 0755 "/build/$t" /out/; done; \
    ldd /out/cdp-* | awk '$2 == "=>" { print $1 }' | sort -u >/out/sonames

# ---------------------------------------------------------------- runtime
FROM ${DEBIAN_IMAGE} AS runtime
COPY deploy/setup-debian /usr/local/sbin/cdp-setup-debian
COPY --from=build /out/sonames /tmp/cdp-sonames
RUN set -eu; \
    cdp-setup-debian --runtime --clean; \
    rm /usr/local/sbin/cdp-setup-debian; \
    missing=""; \
    for so in $(cat /tmp/cdp-sonames); do \
      ldconfig -p | grep -q "^[[:space:]]*$so " || missing="$missing $so"; \
    done; \
    if [ -n "$missing" ]; then \
      echo "runtime image lacks:$missing (add its package to setup-debian's runtime_packages)" >&2; \
      exit 1; \
    fi; \
    rm /tmp/cdp-sonames; \
    groupadd --gid 10001 cdp; \
    useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin cdp
USER 10001:10001
WORKDIR /

# ---------------------------------------------------------------- services
FROM runtime AS ingestion
COPY --from=build /out/cdp-ingestion /usr/local/bin/cdp-ingestion
EXPOSE 50051 9151
ENTRYPOINT ["/usr/local/bin/cdp-ingestion"]

FROM runtime AS identity
COPY --from=build /out/cdp-identity /usr/local/bin/cdp-identity
EXPOSE 50052 9152
ENTRYPOINT ["/usr/local/bin/cdp-identity"]

FROM runtime AS profile
COPY --from=build /out/cdp-profile /usr/local/bin/cdp-profile
EXPOSE 50053 9153
ENTRYPOINT ["/usr/local/bin/cdp-profile"]

FROM runtime AS segmentation
COPY --from=build /out/cdp-segmentation /usr/local/bin/cdp-segmentation
EXPOSE 50054 9154
ENTRYPOINT ["/usr/local/bin/cdp-segmentation"]

FROM runtime AS consent
COPY --from=build /out/cdp-consent /usr/local/bin/cdp-consent
EXPOSE 50055 9155
ENTRYPOINT ["/usr/local/bin/cdp-consent"]

FROM runtime AS activation
COPY --from=build /out/cdp-activation /usr/local/bin/cdp-activation
EXPOSE 50056 9156
ENTRYPOINT ["/usr/local/bin/cdp-activation"]
