// Asio's implementation, compiled once (BOOST_ASIO_SEPARATE_COMPILATION) instead of in every
// translation unit that includes an Asio header: it saves minutes of build on 2 cores.
#include <boost/asio/impl/src.hpp>
