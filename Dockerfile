# The skein/skein image: one static binary that is istiod (`skein
# discovery`), the sidecar and gateway proxy (`skein proxy`) and the mesh
# dashboard (`skein dashboard`, samples/addons/kiali.yaml). `skein install`
# and the injector use it by default. `skein up` does not need it. Build
# from the repository root:
#
#   docker build -t skein/skein:latest .

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY cmd ./cmd
COPY internal ./internal
COPY samples ./samples
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/skein ./cmd/skein

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/skein /usr/local/bin/skein
# Istio's proxy user: sidecars run as 1337 so traffic capture can tell
# their own connections apart.
USER 1337:1337
ENTRYPOINT ["skein"]
