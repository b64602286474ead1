FROM gradle:8-jdk21 AS build
WORKDIR /app
COPY settings.gradle.kts build.gradle.kts gradle.properties ./
RUN gradle dependencies --no-daemon
COPY . .
RUN gradle :service:bootJar --no-daemon

FROM eclipse-temurin:21-jre
COPY --from=build /app/service/build/libs/*.jar /app.jar
ENTRYPOINT ["java", "-jar", "/app.jar"]
