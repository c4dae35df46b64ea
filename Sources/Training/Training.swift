import ConvNet
import MNIST
import DataParallel
import ZeroMQ
// Placeholder.
public enum TrainingInfo {}
