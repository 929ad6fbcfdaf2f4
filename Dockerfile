# Builds the shopd binary into a small runtime image.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /out/shopd ./service/cmd/shopd

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/shopd /shopd
ENV PORT=3000
EXPOSE 3000
ENTRYPOINT ["/shopd"]
CMD ["serve"]
