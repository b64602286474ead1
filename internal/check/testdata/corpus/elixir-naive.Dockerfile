FROM elixir:1.15
WORKDIR /app
COPY . .
RUN mix local.hex --force && mix local.rebar --force && mix deps.get && mix compile
CMD ["mix", "phx.server"]
