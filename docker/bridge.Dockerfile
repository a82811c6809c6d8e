# lb-bridge: the HTTP API in front of one lb-agent, as the unprivileged user lb-bridge. It reads
# the same settings as the agent ([lb-agent] host, port, command_endpoint; [security]).
#   podman build -f docker/bridge.Dockerfile --build-arg BASE_IMAGE=debian:bookworm-slim .
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
COPY build/lb-agent_*.deb /tmp/lb-agent/
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends /tmp/lb-agent/*.deb \
 && apt-get clean && rm -rf /var/lib/apt/lists/* /tmp/lb-agent

COPY docker/lb-entrypoint /usr/local/bin/lb-entrypoint
COPY docker/lb-agent.cfg /etc/lb-agent/lb-agent.cfg
USER lb-bridge
EXPOSE 6666
ENTRYPOINT ["lb-entrypoint", "lb-bridge"]
