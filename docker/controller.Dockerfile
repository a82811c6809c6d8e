# The fleet controller, as the unprivileged user lb-controller; its state (version counter,
# desired states) in /var/lib/lb-controller: mount a volume there (compose.yaml does).
# Settings: /etc/lb-controller/lb-controller.cfg (the package's), then LB_<KEY> variables for
# its keys (lb-entrypoint, docker/README.md).
#   podman build -f docker/controller.Dockerfile --build-arg BASE_IMAGE=debian:bookworm-slim .
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
COPY build/lb-agent_*.deb /tmp/lb-agent/
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends /tmp/lb-agent/*.deb \
 && apt-get clean && rm -rf /var/lib/apt/lists/* /tmp/lb-agent

COPY docker/lb-entrypoint /usr/local/bin/lb-entrypoint
COPY docker/fleet-push /usr/local/bin/fleet-push
# /run/lb-controller: the default control socket (ipc://); /var/lib/lb-controller: state_dir.
RUN adduser --quiet --system --group --home /var/lib/lb-controller lb-controller \
 && install -d -o lb-controller -g lb-controller -m 0750 /var/lib/lb-controller /run/lb-controller
USER lb-controller
ENTRYPOINT ["lb-entrypoint", "lb-controller"]
