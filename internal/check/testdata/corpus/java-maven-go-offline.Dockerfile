FROM maven:3.9-eclipse-temurin-17 AS build
WORKDIR /workspace
COPY pom.xml .
RUN mvn -B dependency:go-offline
COPY src ./src
RUN mvn -B -o package -DskipTests

FROM eclipse-temurin:17-jre-alpine
COPY --from=build /workspace/target/app.jar /app.jar
ENTRYPOINT ["java", "-jar", "/app.jar"]
