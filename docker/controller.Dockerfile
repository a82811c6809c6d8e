# The fleet controller, as the unprivileged user lb-controller; its state (version counter,
# desired states) in /var/lib/lb-controller: mount a volume there (compose.yaml does).
# Settings from LB_FLEET_* variables (controller-entrypoint, docker/README.md).
#   podman build -f docker/controller.Dockerfile --build-arg BASE_IMAGE=debian:bookworm-slim .
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
COPY build/lb-agent_*.deb /tmp/lb-agent/
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends /tmp/lb-agent/*.deb \
 && apt-get clean && rm -rf /var/lib/apt/lists/* /tmp/lb-agent

COPY docker/controller-entrypoint /usr/local/bin/controller-entrypoint
COPY docker/fleet-push /usr/local/bin/fleet-push
RUN adduser --quiet --system --group --home /var/lib/lb-controller lb-controller \
 && install -d -o lb-controller -g lb-controller -m 0750 /var/lib/lb-controller
USER lb-controller
# The controller program and its fixed arguments; controller-entrypoint adds the flags.
ENTRYPOINT ["controller-entrypoint", "lbctl", "fleet", "serve"]
