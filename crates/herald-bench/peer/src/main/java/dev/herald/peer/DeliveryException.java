package dev.herald.peer;

/**
 * A failed delivery attempt worth retrying: 408, 429, 5xx, a timeout or a connection error.
 * Spring Kafka sends the record to the next retry topic, or to the DLT once attempts are used up.
 */
public class DeliveryException extends RuntimeException {

	public DeliveryException(String message) {
		super(message);
	}

	public DeliveryException(String message, Throwable cause) {
		super(message, cause);
	}

}
