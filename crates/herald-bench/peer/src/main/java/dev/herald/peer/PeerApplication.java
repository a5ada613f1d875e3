package dev.herald.peer;

import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.boot.context.properties.ConfigurationPropertiesScan;

import sun.misc.Signal;

/**
 * Forwards CloudEvents from a Kafka topic to a webhook endpoint, with Spring Kafka's
 * non-blocking retries (retry topics and a dead-letter topic).
 */
@SpringBootApplication
@ConfigurationPropertiesScan
public class PeerApplication {

	public static void main(String[] args) {
		// SIGTERM is the normal way to stop this service. System.exit runs Spring Boot's
		// shutdown hook, which closes the context gracefully (the listener containers
		// stop and commit their offsets), and the process exits 0 rather than the JVM's 143.
		Signal.handle(new Signal("TERM"), (signal) -> System.exit(0));
		SpringApplication.run(PeerApplication.class, args);
	}

}
