package dev.herald.peer;

/**
 * A delivery that retrying cannot fix (any other non-2xx status, or a record that is not a
 * CloudEvent): configured as not retryable, so the record goes straight to the DLT.
 */
public class PermanentDeliveryException extends RuntimeException {

	public PermanentDeliveryException(String message) {
		super(message);
	}

	public PermanentDeliveryException(String message, Throwable cause) {
		super(message, cause);
	}

}
