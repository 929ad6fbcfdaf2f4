# Builds the shopd binary into a small runtime image. The build stage is the
# Go release go.mod asks for (its `go` line), so the image and `make build`
# compile with the same toolchain; bump both together.
ARG GO_VERSION=1.26.8
FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY migrations/ migrations/
COPY service/ service/
RUN CGO_ENABLED=0 go build -trimpath -o /out/shopd ./service/cmd/shopd

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/shopd /shopd
ENV PORT=3000
EXPOSE 3000
ENTRYPOINT ["/shopd"]
CMD ["serve"]
