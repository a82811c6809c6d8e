# lb-agent with haproxy (managed mode): the agent runs haproxy itself, both as the unprivileged
# user lb-agent. Built from the repository root after scripts/package (docker/README.md):
#   podman build -f docker/agent.Dockerfile --build-arg BASE_IMAGE=debian:bookworm-slim .
# The first two steps are the same in the three Dockerfiles, so that their layers are shared.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
COPY build/lb-agent_*.deb /tmp/lb-agent/
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends /tmp/lb-agent/*.deb \
 && apt-get clean && rm -rf /var/lib/apt/lists/* /tmp/lb-agent

COPY docker/lb-entrypoint /usr/local/bin/lb-entrypoint
COPY docker/lb-agent.cfg /etc/lb-agent/lb-agent.cfg
COPY docker/haproxy.cfg docker/backend.cfg /usr/share/lb-agent/docker/
# /run/lb-agent: haproxy's master socket and pid file. /var/lib/lb-agent: the live haproxy.cfg,
# history, fleet state: mount a volume there (compose.yaml does). No VOLUME line: the same image
# runs the stand-in app servers, which would each leave an anonymous volume behind.
RUN install -d -o lb-agent -g haproxy -m 0750 /run/lb-agent
USER lb-agent
ENTRYPOINT ["lb-entrypoint", "lb-agent"]
