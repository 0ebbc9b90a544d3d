# Outpost node image. It builds nothing: it packs a static binary built
# beforehand into an empty image, so no base image is ever pulled.
#
#   CGO_ENABLED=0 go build -o outpost ./cmd/outpost
#   docker build -t outpost:dev .
#
# The build context is just that binary (see .dockerignore). See
# deploy/README.md for the compose fleet.

# An empty /data directory, to be copied with the right owner below: a
# scratch image has no shell to mkdir/chown with.
FROM scratch AS datadir
WORKDIR /data

FROM scratch
COPY outpost /outpost
COPY --from=datadir --chown=65532:65532 /data /data

# Not root. The data directory (identity, key, database) must be writable by
# 65532:65532: a new named volume inherits the owner of /data above; a bind
# mount must be chowned on the host (chown -R 65532:65532 DIR).
USER 65532:65532
WORKDIR /data
VOLUME /data

# 7700: app API (JSON); 7701: peer transport (HTTP/2 over mutual TLS).
EXPOSE 7700 7701

# No curl in a scratch image: the binary probes itself. /readyz answers 200
# once the node is serving and caught up with its upstream peers. It assumes
# the API on port 7700 (the compose fleet's --api 0.0.0.0:7700).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
	CMD ["/outpost", "probe", "--url", "http://127.0.0.1:7700/readyz", "--timeout", "3s"]

ENTRYPOINT ["/outpost"]
# A single node on /data; the compose fleet passes its own arguments.
CMD ["serve", "--data", "/data", "--api", "0.0.0.0:7700", "--peer-addr", "0.0.0.0:7701"]
